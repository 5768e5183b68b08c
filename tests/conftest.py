from pathlib import Path

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
