"""Arbitrary JSON, unicode and bytes at every POST endpoint: never a 500, always JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from promofilter.service import create_app
from promofilter.settings import Settings

ENDPOINTS = ["/v1/classify", "/v1/analyze", "/v1/moderate"]

# any unicode, lone surrogates included (JSON escapes them as \udXXX)
texts = st.text(st.characters(exclude_categories=()), max_size=300)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            texts | st.sampled_from(["text", "texts", "policy"]), children, max_size=5
        )
    ),
    max_leaves=20,
)
# shapes close to valid requests reach the validators and the model, not just the parser
near_valid = st.one_of(
    st.fixed_dictionaries(
        {"texts": st.lists(texts, max_size=6)},
        optional={"threshold": json_values, "extra": json_values},
    ),
    st.fixed_dictionaries(
        {"text": texts},
        optional={
            "policy": st.sampled_from(["flag", "strip", "", "FLAG"]) | json_values,
            "threshold": st.floats() | st.none(),
        },
    ),
)


@pytest.fixture(scope="module")
def client(fp32_model: Path) -> Iterator[TestClient]:
    app = create_app(Settings(model=str(fp32_model), max_wait_ms=0, max_body_bytes=4096))
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the model never became ready"
            time.sleep(0.05)
        yield client


def answer_is_clean(client: TestClient, path: str, body: bytes) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code in (200, 413, 422), response.text
    response.json()  # always JSON, whatever came in


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), payload=json_values | near_valid)
def test_arbitrary_json_never_gets_a_500(client, path, payload):
    answer_is_clean(client, path, json.dumps(payload).encode())


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), body=st.binary(max_size=600))
def test_arbitrary_bytes_never_get_a_500(client, path, body):
    answer_is_clean(client, path, body)


@FUZZ
@given(
    path=st.sampled_from(ENDPOINTS),
    size=st.integers(0, 9000),
    char=st.characters(exclude_categories=()),
)
def test_any_size_never_gets_a_500(client, path, size, char):
    key = "texts" if path == "/v1/classify" else "text"
    value = [char * size] if key == "texts" else char * size
    answer_is_clean(client, path, json.dumps({key: value}).encode())
