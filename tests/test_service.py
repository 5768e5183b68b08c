"""The HTTP service in-process through FastAPI's TestClient, mostly on the tiny fp32 model.

tests/test_service_process.py runs it as a real uvicorn process; tests/test_service_fuzz.py
throws arbitrary JSON at it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import promofilter
import pytest
from fastapi.testclient import TestClient
from promofilter.model import ModelLoadError, PromoFilter
from promofilter.service import create_app
from promofilter.settings import Settings, SettingsError

SEED_SENTENCES = [
    "Der DAX schloss am Freitag 0,4 Prozent höher bei 18.250 Punkten.",
    "Jetzt Gratis-Report sichern!",
    "Kurz.",
    "Die Analysten der Deutschen Bank heben das Kursziel für die Aktie von 120 auf 135 Euro an "
    "und bestätigen ihre Kaufempfehlung, nachdem das Unternehmen im dritten Quartal mehr "
    "verdient hat als erwartet und den Ausblick für das Gesamtjahr angehoben hat.",
]


def post(client: TestClient, path: str, payload: Any, **headers: str):
    """POST ``payload`` as JSON with every non-ASCII character escaped, so that lone
    surrogates reach the service as they would from any JSON encoder."""
    return client.post(
        path,
        content=json.dumps(payload).encode(),
        headers={"content-type": "application/json", **headers},
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@contextmanager
def serving(
    settings: Settings, loader: Callable[[Settings], Any] | None = None, ready: bool = True
) -> Iterator[TestClient]:
    app = create_app(settings, loader) if loader else create_app(settings)
    with TestClient(app) as client:
        if ready:
            wait_until(lambda: client.get("/readyz").status_code == 200)
        yield client


class RecordingModel:
    """A loaded model whose ``encode`` (what the batcher calls) records each call; with
    ``gate`` each call waits for the gate to open (a slow model). Everything else is the real
    model's."""

    def __init__(self, model: PromoFilter, gate: threading.Event | None = None) -> None:
        self.model = model
        self.gate = gate
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        self.calls.append(list(texts))
        return self.model.encode(texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


@pytest.fixture(scope="module")
def tiny(fp32_model: Path) -> PromoFilter:
    return promofilter.load(fp32_model)


@pytest.fixture(scope="module")
def client(fp32_model: Path) -> Iterator[TestClient]:
    with serving(Settings(model=str(fp32_model), max_wait_ms=1, max_texts=50)) as client:
        yield client


def middle_threshold(model: PromoFilter, document: str) -> float:
    """A threshold between the segment scores of ``document``: some promotional, some not.

    It lies halfway between two neighbouring scores, never on one: a score can differ with
    its batch mates in the seventh decimal place, which would flip a label that sits exactly
    on the threshold."""
    scores = sorted(s.score for s in model.analyze(document, threshold=1.0).segments)
    middle = len(scores) // 2
    gaps = [(abs(i - middle), i) for i in range(1, len(scores)) if scores[i] - scores[i - 1] > 1e-5]
    _, upper = min(gaps)
    return float(scores[upper - 1] + scores[upper]) / 2


# --- the endpoints ---------------------------------------------------------------------------


def test_classify_gives_predict_probas_score_and_label_per_text(client, tiny):
    response = post(client, "/v1/classify", {"texts": SEED_SENTENCES})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = tiny.predict_proba(SEED_SENTENCES)
    assert [r["score"] for r in body["results"]] == pytest.approx(expected.tolist(), abs=1e-6)
    assert [r["label"] for r in body["results"]] == tiny.predict(SEED_SENTENCES)
    assert body["threshold"] == tiny.threshold
    everything = post(client, "/v1/classify", {"texts": SEED_SENTENCES, "threshold": 0.0})
    assert {r["label"] for r in everything.json()["results"]} == {"promotional"}


def test_analyze_gives_what_the_library_gives(client, tiny, seed_article):
    document = seed_article.read_text(encoding="utf-8")
    for threshold in (None, middle_threshold(tiny, document)):
        response = post(client, "/v1/analyze", {"text": document, "threshold": threshold})
        assert response.status_code == 200, response.text
        body = response.json()
        expected = tiny.analyze(document, threshold=threshold)
        assert [(s["start"], s["end"], s["text"], s["label"]) for s in body["segments"]] == [
            (s.start, s.end, s.text, s.label) for s in expected.segments
        ]
        assert [s["score"] for s in body["segments"]] == pytest.approx(
            [s.score for s in expected.segments], abs=1e-6
        )
        assert (body["label"], body["promo_share"]) == (expected.label, expected.promo_share)
        assert body["threshold"] == expected.threshold


def test_moderate_allows_flags_or_strips(client, tiny, seed_article):
    document = seed_article.read_text(encoding="utf-8")
    threshold = middle_threshold(tiny, document)
    expected = tiny.analyze(document, threshold=threshold)
    assert expected.promotional, "the middle threshold leaves some segments promotional"
    spans = [
        {"start": s.start, "end": s.end, "text": s.text, "score": pytest.approx(s.score, abs=1e-6)}
        for s in expected.promotional
    ]

    strip = post(
        client, "/v1/moderate", {"text": document, "policy": "strip", "threshold": threshold}
    )
    assert strip.status_code == 200, strip.text
    assert strip.json()["decision"] == "strip"
    assert strip.json()["clean_text"] == expected.clean()
    assert strip.json()["spans"] == spans
    assert strip.json()["promo_share"] == expected.promo_share

    flag = post(client, "/v1/moderate", {"text": document, "threshold": threshold}).json()
    assert (flag["decision"], flag["clean_text"], flag["spans"]) == ("flag", None, spans)

    allow = post(client, "/v1/moderate", {"text": document, "policy": "strip", "threshold": 1.0})
    assert allow.json() == {
        "decision": "allow",
        "clean_text": None,
        "spans": [],
        "promo_share": 0.0,
        "threshold": 1.0,
    }


def test_the_openapi_schema_names_the_versioned_endpoints(client):
    schema = client.get("/openapi.json").json()
    for path in ("/v1/classify", "/v1/analyze", "/v1/moderate"):
        assert "requestBody" in schema["paths"][path]["post"]
    moderate = schema["components"]["schemas"]["ModerateRequest"]
    assert moderate["properties"]["policy"]["enum"] == ["flag", "strip"]


def test_probes_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json()["status"] == "ready"
    post(client, "/v1/classify", {"texts": ["Hallo Welt."]})
    post(client, "/v1/classify", {"texts": [""]})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'promofilter_requests_total{endpoint="/v1/classify",status="200"}' in text
    assert 'promofilter_requests_total{endpoint="/v1/classify",status="422"}' in text
    assert 'promofilter_request_duration_seconds_count{endpoint="/v1/classify"}' in text
    batches = next(
        line for line in text.splitlines() if line.startswith("promofilter_batch_size_count")
    )
    assert int(batches.split()[1]) >= 2  # the warm-up and the request above
    assert "promofilter_queue_depth 0\n" in text and "promofilter_ready 1\n" in text


def metric(text: str, name: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


@pytest.mark.parametrize("cascade", [True, False])
def test_the_metrics_count_the_segments_the_cascade_skipped(cascade_model, cascade):
    from promofilter.service import WARM_UP_TEXTS

    texts = ["Der Kurs stieg am Dienstag.", "Hier weiterlesen...", "Jetzt Gratis-Analyse sichern!"]
    settings = Settings(model=str(cascade_model), max_wait_ms=1, cascade=cascade)
    with serving(settings) as client:
        assert post(client, "/v1/classify", {"texts": texts}).status_code == 200
        text = client.get("/metrics").text
    model = promofilter.load(cascade_model)
    expected = model.cascade.skipped(model.lexical.rows(WARM_UP_TEXTS + texts)).sum()
    assert expected > 0  # the fixture's bounds let some of these texts skip
    assert metric(text, "promofilter_segments_skipped_total") == (expected if cascade else 0)
    assert metric(text, "promofilter_segments_scored_total") == len(WARM_UP_TEXTS + texts)


def test_an_unknown_path_is_a_json_404(client):
    response = client.get("/v2/classify")
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}


# --- batching never changes a result ---------------------------------------------------------


def scores_alone_and_in_a_shared_batch(
    model_dir: Path | None, text: str, mates: list[str]
) -> tuple[float, float, list[list[str]]]:
    """``text`` scored through the service alone, then in one batch with ``mates`` sent by
    concurrent requests; also the texts of each model call made for them."""
    recorder: list[RecordingModel] = []

    def loader(settings: Settings) -> RecordingModel:
        recorder.append(RecordingModel(promofilter.load(settings.model)))
        return recorder[0]

    settings = Settings(
        model=None if model_dir is None else str(model_dir), max_wait_ms=500, max_batch_size=64
    )
    with serving(settings, loader) as client:
        alone = post(client, "/v1/classify", {"texts": [text]}).json()["results"][0]["score"]
        recorder[0].calls.clear()
        requests = [[mate] for mate in mates]
        requests.insert(len(requests) // 2, [text])
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(
                pool.map(lambda texts: post(client, "/v1/classify", {"texts": texts}), requests)
            )
        assert all(a.status_code == 200 for a in answers)
        batched = answers[requests.index([text])].json()["results"][0]["score"]
    return alone, batched, recorder[0].calls


MATES = [
    "Kurs.",
    "Hier weiterlesen...",
    " ".join(SEED_SENTENCES),
    "Die Zentralbank ließ den Leitzins unverändert, signalisierte aber eine Senkung im Herbst.",
    SEED_SENTENCES[3] * 3,  # longer than the model's window: scored in several windows
]


def test_batching_never_changes_a_score(fp32_model):
    text = SEED_SENTENCES[0]
    alone, batched, calls = scores_alone_and_in_a_shared_batch(fp32_model, text, MATES)
    shared = [call for call in calls if text in call]
    assert len(shared) == 1 and len(shared[0]) > 1, f"not one shared batch: {calls}"
    assert len({len(t) for t in shared[0]}) > 2, "batch mates of different lengths"
    assert abs(alone - batched) <= 1e-6, (alone, batched)


def test_batching_never_changes_a_score_with_the_shipped_model():
    text = SEED_SENTENCES[0]
    alone, batched, calls = scores_alone_and_in_a_shared_batch(None, text, MATES)
    assert any(text in call and len(call) > 1 for call in calls)
    assert abs(alone - batched) <= 1e-6, (alone, batched)


def test_the_shipped_model_analyzes_the_seed_article_as_the_library_does(seed_article):
    document = seed_article.read_text(encoding="utf-8")
    expected = promofilter.load().analyze(document)
    with serving(Settings()) as client:
        body = post(client, "/v1/analyze", {"text": document}).json()
    assert [(s["start"], s["end"], s["label"]) for s in body["segments"]] == [
        (s.start, s.end, s.label) for s in expected.segments
    ]
    assert [s["score"] for s in body["segments"]] == pytest.approx(
        [s.score for s in expected.segments], abs=1e-6
    )
    assert body["label"] == "promotional"


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "location", "message"),
    [
        ("/v1/classify", {"texts": []}, ["body", "texts"], "at least 1"),
        ("/v1/classify", {"texts": ["gut", ""]}, ["body", "texts", 1], "empty text"),
        ("/v1/classify", {"texts": [" \n\t "]}, ["body", "texts", 0], "empty text"),
        ("/v1/classify", {"texts": ["a\x00b"]}, ["body", "texts", 0], "U+0000 at index 1"),
        ("/v1/classify", {"texts": ["ok", "x\ud83d"]}, ["body", "texts", 1], "U+D83D at index 1"),
        ("/v1/classify", {"texts": ["\x1b[31m"]}, ["body", "texts", 0], "U+001B"),
        ("/v1/classify", {"texts": "ein Text"}, ["body", "texts"], "list"),
        ("/v1/classify", {"texts": [1]}, ["body", "texts", 0], "string"),
        ("/v1/classify", {"texts": ["a"], "threshold": 2}, ["body", "threshold"], "1"),
        ("/v1/classify", {"texts": ["a"] * 51}, ["body", "texts"], "at most 50"),
        ("/v1/classify", {"txt": ["a"]}, ["body", "texts"], "required"),
        ("/v1/classify", [], ["body"], "dictionary"),
        ("/v1/analyze", {"text": ""}, ["body", "text"], "empty text"),
        ("/v1/analyze", {"text": None}, ["body", "text"], "string"),
        ("/v1/moderate", {"text": "ok", "policy": "delete"}, ["body", "policy"], "flag"),
        ("/v1/moderate", {"text": "ok", "extra": 1}, ["body", "extra"], "not permitted"),
    ],
)
def test_a_wrong_request_gets_422_naming_the_field(client, path, payload, location, message):
    response = post(client, path, payload)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"] == location and message in e["msg"] for e in errors), errors


@pytest.mark.parametrize(
    "body", [b'{"texts": [', b"\xff\xfe{}", b"", b'{"texts": ["a"]} x', b"\x00" * 8]
)
def test_malformed_json_gets_422(client, body):
    response = client.post(
        "/v1/classify", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_a_body_over_the_limit_gets_413(fp32_model):
    with serving(Settings(model=str(fp32_model), max_body_bytes=200)) as client:
        small = post(client, "/v1/classify", {"texts": ["x" * 100]})
        assert small.status_code == 200
        large = post(client, "/v1/classify", {"texts": ["x" * 300]})
        assert large.status_code == 413
        assert "limit of 200 bytes" in large.json()["detail"]
        # no Content-Length: the bytes are counted as they come
        chunks = iter([b'{"texts": ["', b"x" * 150, b"x" * 150, b'"]}'])
        streamed = client.post(
            "/v1/classify", content=chunks, headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413


# --- backpressure, deadline, readiness -------------------------------------------------------


def gated(model_dir: Path, gate: threading.Event) -> Callable[[Settings], RecordingModel]:
    return lambda settings: RecordingModel(promofilter.load(model_dir), gate)


def test_above_the_queue_limit_the_service_answers_429_with_retry_after(fp32_model):
    gate = threading.Event()
    gate.set()  # open for the warm-up
    settings = Settings(
        model=str(fp32_model),
        max_batch_size=1,
        max_wait_ms=0,
        max_queued_segments=3,
        model_calls=1,  # the second request waits in the queue while the first call is blocked
    )
    with serving(settings, gated(fp32_model, gate)) as client, ThreadPoolExecutor(2) as pool:
        gate.clear()
        batcher = client.app.state.service.batcher
        first = pool.submit(post, client, "/v1/classify", {"texts": ["im Modell"]})
        wait_until(lambda: batcher.queued == 0 and first.running())
        time.sleep(0.05)  # the first text is in the (blocked) model call
        second = pool.submit(post, client, "/v1/classify", {"texts": ["a", "b", "c"]})
        wait_until(lambda: batcher.queued == 3)
        refused = post(client, "/v1/classify", {"texts": ["noch einer"]})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "limit of 3" in refused.json()["detail"]
        assert client.get("/metrics").text.count("promofilter_queue_depth 3\n") == 1
        gate.set()
        assert first.result().status_code == 200 and second.result().status_code == 200


def test_a_request_past_its_deadline_gets_503_and_leaves_the_queue(fp32_model):
    gate = threading.Event()
    gate.set()
    settings = Settings(model=str(fp32_model), request_timeout=0.5, max_wait_ms=0)
    with serving(settings, gated(fp32_model, gate)) as client:
        gate.clear()
        started = time.monotonic()
        response = post(client, "/v1/analyze", {"text": "Der Kurs stieg."})
        waited = time.monotonic() - started
        assert response.status_code == 503
        assert "deadline of 0.5 s" in response.json()["detail"]
        assert response.headers["retry-after"] == "1"
        assert 0.5 <= waited < 5
        gate.set()
        wait_until(lambda: client.app.state.service.batcher.queued == 0)
        assert post(client, "/v1/classify", {"texts": ["wieder da"]}).status_code == 200


def test_ready_only_after_the_model_is_loaded_and_warmed_up(fp32_model):
    loaded, warm = threading.Event(), threading.Event()

    def slow_loader(settings: Settings) -> RecordingModel:
        assert loaded.wait(30)
        return RecordingModel(promofilter.load(fp32_model), warm)

    with serving(Settings(model=str(fp32_model)), slow_loader, ready=False) as client:
        assert client.get("/healthz").status_code == 200
        loading = client.get("/readyz")
        assert (loading.status_code, loading.json()) == (503, {"status": "loading"})
        refused = post(client, "/v1/classify", {"texts": ["zu früh"]})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        loaded.set()  # loaded, but the warm-up inference still waits
        wait_until(lambda: client.app.state.service.model is not None)
        assert client.get("/readyz").status_code == 503
        assert "promofilter_ready 0\n" in client.get("/metrics").text
        warm.set()
        wait_until(lambda: client.get("/readyz").status_code == 200)
        assert client.get("/readyz").json()["model"] == promofilter.load(fp32_model).name
        assert post(client, "/v1/classify", {"texts": ["jetzt"]}).status_code == 200


def test_a_model_that_fails_to_load_fails_both_probes_with_the_reason(tmp_path):
    with serving(Settings(model=str(tmp_path / "nowhere")), ready=False) as client:
        wait_until(lambda: client.get("/healthz").status_code == 503)
        for probe in ("/healthz", "/readyz"):
            body = client.get(probe).json()
            assert body["status"] == "failed" and "no such model directory" in body["error"]
        refused = post(client, "/v1/classify", {"texts": ["a"]})
        assert refused.status_code == 503 and "could not be loaded" in refused.json()["detail"]


# --- auth ------------------------------------------------------------------------------------


def test_with_a_token_only_the_health_probes_are_open(fp32_model):
    with serving(Settings(model=str(fp32_model), token="s3cret")) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        payload = {"texts": ["Hallo"]}
        for path, call in [
            ("/v1/classify", lambda **h: post(client, "/v1/classify", payload, **h)),
            ("/v1/analyze", lambda **h: post(client, "/v1/analyze", {"text": "Hallo"}, **h)),
            ("/v1/moderate", lambda **h: post(client, "/v1/moderate", {"text": "Hallo"}, **h)),
            ("/metrics", lambda **h: client.get("/metrics", headers=h)),
            ("/openapi.json", lambda **h: client.get("/openapi.json", headers=h)),
        ]:
            missing = call()
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"] == "Bearer"
            assert missing.json() == {"detail": "missing bearer token"}
            wrong = call(authorization="Bearer s3cre")
            assert (wrong.status_code, wrong.json()["detail"]) == (401, "invalid bearer token")
            assert call(authorization="Basic s3cret").status_code == 401
            assert call(authorization="Bearer s3cret").status_code == 200, path


def test_without_a_token_every_endpoint_is_open(client):
    assert post(client, "/v1/classify", {"texts": ["Hallo"]}).status_code == 200
    assert client.get("/metrics").status_code == 200


# --- settings --------------------------------------------------------------------------------


def test_settings_round_trip_through_the_environment(tmp_path):
    settings = Settings(
        model="/m", threshold=0.7, threads=1, model_batch_size=8, max_wait_ms=2.5, max_texts=9
    )
    assert Settings.from_env(settings.to_env()) == settings
    exact = Settings(cascade=False)
    assert Settings.from_env(exact.to_env()) == exact
    assert Settings.from_env({"PROMOFILTER_CASCADE": "no"}).cascade is False
    assert Settings.from_env({"PROMOFILTER_CASCADE": "1"}).cascade is True
    assert Settings.from_env({}) == Settings()


def test_the_token_comes_from_its_file_before_the_variable(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("aus-der-datei\n")
    assert Settings.from_env({"PROMOFILTER_TOKEN": "variable"}).token == "variable"
    both = {"PROMOFILTER_TOKEN": "variable", "PROMOFILTER_TOKEN_FILE": str(token_file)}
    assert Settings.from_env(both).token == "aus-der-datei"
    with pytest.raises(SettingsError, match="PROMOFILTER_TOKEN_FILE: cannot read"):
        Settings.from_env({"PROMOFILTER_TOKEN_FILE": str(tmp_path / "none")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):
        Settings.from_env({"PROMOFILTER_TOKEN_FILE": str(tmp_path / "empty")})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PROMOFILTER_MAX_BATCH_SIZE", "0", "at least 1"),
        ("PROMOFILTER_MAX_WAIT_MS", "soon", "not a number"),
        ("PROMOFILTER_THRESHOLD", "1.5", "between 0 and 1"),
        ("PROMOFILTER_MAX_BODY_BYTES", "1.5", "not an integer"),
        ("PROMOFILTER_CASCADE", "off", "must be one of true, 1, yes, false, 0, no, got 'off'"),
    ],
)
def test_a_bad_setting_names_its_variable(variable, value, message):
    with pytest.raises(SettingsError, match=f"{variable}: .*{message}"):
        Settings.from_env({variable: value})


def test_a_model_load_error_is_the_loaders_own():
    with pytest.raises(ModelLoadError):
        promofilter.service.load_model(Settings(model="/nowhere/at/all"))


def test_the_model_runs_in_batches_of_the_configured_size(fp32_model):
    model = promofilter.service.load_model(Settings(model=str(fp32_model), model_batch_size=8))
    assert model.batch_size == 8
    assert promofilter.service.load_model(Settings(model=str(fp32_model))).batch_size == 16
