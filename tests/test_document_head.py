"""The document head: a transformer over a document's segment embeddings, in numpy at run
time and in torch for training; the two must agree, and its file must say what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from promofilter.context import (
    CONTEXT_HEAD_FILE,
    DocumentHead,
    MixtureHead,
    load_head,
)

torch = pytest.importorskip("torch", reason="needs the 'train' extra")

from training.document_model import SegmentContext  # noqa: E402

HIDDEN = 16


def torch_context(seed: int = 0, layers: int = 2, positions: int = 4) -> SegmentContext:
    torch.manual_seed(seed)
    context = SegmentContext(
        HIDDEN, width=8, layers=layers, heads=2, positions=positions, dropout=0.1
    )
    return context.eval()


def torch_logits(context: SegmentContext, documents: torch.Tensor, present, own, own_bias):
    with torch.no_grad():
        return context(documents, present) + documents @ own + own_bias


@pytest.fixture
def heads():
    context = torch_context()
    own = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(1))
    return context, own, 0.3, context.to_head(own, 0.3)


@pytest.mark.parametrize("segments", [1, 2, 3, 9])
def test_the_numpy_head_computes_what_the_torch_context_computes(heads, segments):
    """9 segments pass the 4 learned positions: both sides reuse the last from either end."""
    context, own, own_bias, head = heads
    rows = torch.randn(1, segments, HIDDEN, generator=torch.Generator().manual_seed(segments))
    present = torch.ones(1, segments, dtype=torch.bool)
    expected = torch.sigmoid(torch_logits(context, rows, present, own, own_bias))[0].numpy()
    np.testing.assert_allclose(head.in_document(rows[0].numpy()), expected, atol=1e-6)


def test_a_padded_torch_batch_gives_each_document_its_own_logits(heads):
    """Training batches documents of different lengths; padding must not leak into them."""
    context, own, own_bias, _ = heads
    rows = torch.randn(2, 5, HIDDEN, generator=torch.Generator().manual_seed(7))
    present = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    batched = torch_logits(context, rows, present, own, own_bias)
    short = torch_logits(context, rows[:1, :3], present[:1, :3], own, own_bias)
    torch.testing.assert_close(batched[0, :3], short[0], atol=1e-6, rtol=0)


def test_alone_is_a_document_of_one_segment(heads):
    *_, head = heads
    rows = np.random.default_rng(2).normal(size=(6, HIDDEN))
    singles = np.concatenate([head.in_document(row[None, :]) for row in rows])
    np.testing.assert_allclose(head.alone(rows), singles, rtol=1e-6)
    assert not np.allclose(head.alone(rows), head.in_document(rows))


def test_the_context_changes_a_segments_score_and_its_position_counts(heads):
    *_, head = heads
    rows = np.random.default_rng(3).normal(size=(4, HIDDEN))
    reversed_scores = head.in_document(rows[::-1])[::-1]
    assert not np.allclose(head.in_document(rows), reversed_scores)
    assert head.in_document(rows[:0]).shape == (0,)
    assert head.alone(rows[:0]).shape == (0,)
    with pytest.raises(ValueError, match=rf"rows of shape \(n, {HIDDEN}\)"):
        head.in_document(rows[:, :3])


def test_the_head_survives_a_round_trip_through_its_file(heads, tmp_path):
    *_, head = heads
    head.save(tmp_path / CONTEXT_HEAD_FILE)
    again = load_head(tmp_path / CONTEXT_HEAD_FILE)
    assert isinstance(again, DocumentHead)
    assert (again.dim, again.heads, again.positions, len(again.layers)) == (HIDDEN, 2, 4, 2)
    rows = np.random.default_rng(4).normal(size=(5, HIDDEN))
    np.testing.assert_array_equal(again.in_document(rows), head.in_document(rows))


def test_a_mixture_takes_a_document_head_as_a_member(heads, tmp_path):
    *_, head = heads
    other = torch_context(seed=9, layers=1).to_head(torch.ones(HIDDEN), 0.0)
    mixture = MixtureHead([(0.25, head), (0.75, other)])
    mixture.save(tmp_path / CONTEXT_HEAD_FILE)
    again = load_head(tmp_path / CONTEXT_HEAD_FILE)
    assert [type(member) for _, member in again.members] == [DocumentHead, DocumentHead]
    rows = np.random.default_rng(5).normal(size=(3, 2 * HIDDEN))
    expected = 0.25 * head.in_document(rows[:, :HIDDEN]) + 0.75 * other.in_document(
        rows[:, HIDDEN:]
    )
    np.testing.assert_allclose(again.in_document(rows), expected, rtol=1e-6)


def _broken(raw: dict, change) -> dict:
    raw = json.loads(json.dumps(raw))
    change(raw)
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.pop("project"), "missing field 'project'"),
        (lambda raw: raw.update(heads=3), "3 heads do not divide the width 8"),
        (lambda raw: raw.update(own_bias="x"), "field 'own_bias' must be a number"),
        (lambda raw: raw.update(dim=5), "field 'dim' is 5"),
        (lambda raw: raw.update(layers=[]), "at least one layer"),
        (lambda raw: raw["layers"][1].pop("norm2.bias"), r"layers\[1\] lacks 'norm2.bias'"),
        (lambda raw: raw["layers"][0].update(extra=raw["out"]), r"unknown entries \['extra'\]"),
        (lambda raw: raw.update(out=raw["own"]), r"field 'out' has shape \(16,\), expected"),
        (lambda raw: raw["from_end"].update(base64="!!"), "field 'from_end': 'base64'"),
    ],
)
def test_a_bad_document_head_file_is_named_with_what_is_wrong(heads, tmp_path, change, message):
    *_, head = heads
    path = tmp_path / CONTEXT_HEAD_FILE
    path.write_text(json.dumps(_broken(head.to_json(), change)))
    with pytest.raises(ValueError, match=message) as raised:
        load_head(path)
    assert str(path) in str(raised.value)
