from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED = ROOT.parent / "shared"
SEED_ARTICLE = SHARED / "seed-article.txt"
SEED_PROMOTIONAL_LINES = "16-18"


@pytest.fixture(scope="session")
def tiny_corpus() -> Path:
    return FIXTURES / "tiny.jsonl"


@pytest.fixture(scope="session")
def seed_article() -> Path:
    if not SEED_ARTICLE.is_file():
        pytest.skip(f"{SEED_ARTICLE} not found: the shared folder must sit beside the checkout")
    return SEED_ARTICLE
