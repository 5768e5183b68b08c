"""Trimming the vocabulary to German keeps tokenization and embeddings of kept pieces intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the 'train' extra")

from tokenizers import Tokenizer

from training.vocab import read_word_list, trim_checkpoint

WORDS = ["Aktie", "Analyse", "kaufen", "verkaufen", "weiterlesen", "Bundesbank", "Kreditvergabe"]
COVERED = [
    "Aktie kaufen oder verkaufen?",
    "Die Bundesbank meldete eine Kreditvergabe.",
    "Hier weiterlesen",
]


@pytest.fixture(scope="module")
def trimmed(converted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("trimmed")
    trim_checkpoint(converted, output, WORDS + COVERED)
    return output


def test_trimming_keeps_specials_single_characters_and_the_given_texts(trimmed, converted):
    full = json.loads((converted / "tokenizer.json").read_text())
    kept = json.loads((trimmed / "kept_pieces.json").read_text())["kept_original_ids"]
    assert kept == sorted(set(kept)) and kept[:4] == [0, 1, 2, 3]
    assert len(kept) < len(full["model"]["vocab"]) // 10
    single = [i for i, (p, _) in enumerate(full["model"]["vocab"]) if len(p.lstrip("▁")) == 1]
    assert set(single) <= set(kept)


def test_covered_texts_tokenize_as_before_and_keep_their_embeddings(trimmed, converted):
    import torch
    from transformers import AutoModel

    kept = json.loads((trimmed / "kept_pieces.json").read_text())["kept_original_ids"]
    full, small = (Tokenizer.from_file(str(d / "tokenizer.json")) for d in (converted, trimmed))
    full_model = AutoModel.from_pretrained(converted, add_pooling_layer=False).eval()
    small_model = AutoModel.from_pretrained(trimmed, add_pooling_layer=False).eval()
    for text in COVERED:
        original, new = full.encode(text).ids, small.encode(text).ids
        assert [kept[i] for i in new] == original
        with torch.no_grad():
            a = full_model(input_ids=torch.tensor([original])).last_hidden_state
            b = small_model(input_ids=torch.tensor([new])).last_hidden_state
        assert torch.allclose(a, b, atol=1e-5)
    assert small_model.config.pad_token_id == kept.index(full_model.config.pad_token_id)


def test_unseen_words_split_into_kept_pieces_instead_of_unknown(trimmed):
    small = Tokenizer.from_file(str(trimmed / "tokenizer.json"))
    encoding = small.encode("Quantenchromodynamik Ärztekammerwahl Ωmega")
    unk = small.token_to_id("<unk>")
    assert unk not in encoding.ids
    assert "".join(encoding.tokens[1:-1]).replace("▁", " ").strip() == (
        "Quantenchromodynamik Ärztekammerwahl Ωmega"
    )


def test_a_missing_word_list_says_how_to_install_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install wngerman"):
        read_word_list(tmp_path / "ngerman")
