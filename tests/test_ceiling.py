"""training.ceiling: the shipped kind of head over another encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the 'train' extra")

from training.ceiling import TorchEncoder, head_ceiling, main
from training.corpus import PROMOTIONAL, read_documents
from training.evaluate import SPLITS_DIR


class LabelEncoder:
    """Embeds a text as its gold label (plus noise), so a head over it can be perfect."""

    def __init__(self, documents, noise: float = 0.0) -> None:
        self.promotional = {s.text for d in documents for s in d.segments if s.label == PROMOTIONAL}
        self.noise = noise
        self.random = np.random.default_rng(0)

    def embed(self, texts):
        label = np.array([[text in self.promotional] for text in texts], dtype=np.float32)
        noise = self.random.normal(size=(len(texts), 3)).astype(np.float32)
        return np.hstack([label * (1 - self.noise), self.noise * noise])


@pytest.fixture(scope="module")
def splits():
    return {
        name: read_documents(SPLITS_DIR / f"{name}.jsonl")[:25] for name in ("train", "dev", "test")
    }


def test_an_encoder_that_knows_the_labels_reaches_f1_one(splits) -> None:
    everything = [d for documents in splits.values() for d in documents]
    report = head_ceiling(
        LabelEncoder(everything), splits["train"], splits["dev"], {"test": splits["test"]}, 0.9
    )
    assert report["dev"]["f1"] == 1.0
    assert report["test"]["f1"] == 1.0
    labelled = sum(s.label != "ambiguous" for d in splits["test"] for s in d.segments)
    assert report["test"]["segments"] == labelled


def test_an_encoder_of_noise_leaves_the_head_to_the_n_grams(splits) -> None:
    everything = [d for documents in splits.values() for d in documents]
    informed = head_ceiling(
        LabelEncoder(everything), splits["train"], splits["dev"], {"test": splits["test"]}, 0.9
    )
    blind = head_ceiling(
        LabelEncoder(everything, noise=1.0),
        splits["train"],
        splits["dev"],
        {"test": splits["test"]},
        0.9,
    )
    assert blind["test"]["f1"] < informed["test"]["f1"]
    assert 0.0 <= blind["char_ngram_weight"] <= 1.0


def test_the_torch_encoder_embeds_each_text_as_it_would_alone(smoke_build: Path) -> None:
    work = smoke_build / "work"
    student = next(p for p in work.glob("student-*") if not p.name.endswith("-run"))
    encoder = TorchEncoder(student)
    texts = ["Kurz.", "Jetzt die Gratis-Analyse sichern und weiterlesen!", "Der DAX stieg."]
    together = encoder.embed(texts)  # sorted by length and padded, returned in input order
    alone = np.vstack([encoder.embed([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_main_refuses_a_directory_without_a_checkpoint(tmp_path: Path, capsys) -> None:
    assert main(["--encoder", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
