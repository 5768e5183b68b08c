"""The moderation service: FastAPI app factory, lifespan, routes and their schemas.

    uvicorn promofilter.service:create_app --factory    (or: promofilter serve)

The model loads in the lifespan, in a background task: the server answers ``/healthz`` at
once and ``/readyz`` turns 200 once the model is loaded and one warm-up inference has gone
through the dynamic batcher (:mod:`promofilter.batcher`). ``/v1/analyze`` and
``/v1/moderate`` drive :func:`promofilter.analyze.analysis_steps` with the batcher, so they
return what ``PromoFilter.analyze`` returns. Limits: the body size (413), the queue of
segments (429 with Retry-After), a deadline per request (503), and per-text checks (422).
Needs the ``serve`` extra: ``pip install "promofilter[serve]"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import numpy as np

try:
    from fastapi import FastAPI, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from pydantic import AfterValidator, BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the promofilter service needs FastAPI, uvicorn and pydantic: "
        'pip install "promofilter[serve]"'
    ) from error

import promofilter
from promofilter.analyze import Analysis, analysis_steps, label_of
from promofilter.batcher import BatcherStopped, BatchFunction, DynamicBatcher, QueueFull
from promofilter.metrics import CONTENT_TYPE, ServiceMetrics
from promofilter.model import PromoFilter
from promofilter.settings import Settings

# uvicorn configures this logger, so the lines show up beside its own
logger = logging.getLogger("uvicorn.error")

API_PREFIX = "/v1"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # answered without the token
ENDPOINTS = frozenset(
    {*OPEN_PATHS, "/metrics", "/v1/classify", "/v1/analyze", "/v1/moderate"}
    | {"/docs", "/redoc", "/openapi.json"}
)
# Clients back off this long after a 429 or a 503 for a model still loading.
RETRY_AFTER_SECONDS = 1
WARM_UP_TEXTS = ["Der DAX schloss am Freitag 0,4 Prozent höher.", "Jetzt Gratis-Report sichern!"]

# C0 control characters other than whitespace, and UTF-16 surrogates (JSON "\ud800" decodes
# to a lone one, which no UTF-8 text can hold).
_INVALID_CHARACTER = re.compile(r"[\x00-\x08\x0e-\x1f\ud800-\udfff]")

Label = Literal["promotional", "factual"]
ModelLoader = Callable[[Settings], PromoFilter]


# --- schemas --------------------------------------------------------------------------------


def check_text(text: str) -> str:
    """A text the model can score: not empty or blank, no control characters or surrogates."""
    if not text.strip():
        raise ValueError("empty text: it holds nothing but whitespace")
    invalid = _INVALID_CHARACTER.search(text)
    if invalid:
        raise ValueError(
            f"invalid character U+{ord(invalid.group()):04X} at index {invalid.start()}: "
            "texts may not hold NUL, other control characters or lone surrogates"
        )
    return text


Text = Annotated[str, AfterValidator(check_text)]


def _threshold_field() -> Any:
    return Field(
        default=None, ge=0.0, le=1.0, description="P(promotional) cut-off; default: the model's"
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassifyRequest(_Strict):
    texts: list[Text] = Field(min_length=1, description="the texts to score, each non-empty")
    threshold: float | None = _threshold_field()


class TextScore(BaseModel):
    score: float = Field(description="P(promotional)")
    label: Label


class ClassifyResponse(BaseModel):
    results: list[TextScore] = Field(description="one per text, in order")
    threshold: float


class AnalyzeRequest(_Strict):
    text: Text = Field(description="one document; its paragraphs and lines are its segments")
    threshold: float | None = _threshold_field()


class Segment(BaseModel):
    start: int = Field(description="offset of the first character (Unicode code points)")
    end: int = Field(description="offset after the last character: text == document[start:end]")
    text: str
    label: Label
    score: float = Field(description="P(promotional)")


class AnalyzeResponse(BaseModel):
    segments: list[Segment]
    label: Label = Field(description="promotional if any segment is")
    promo_share: float = Field(description="share of the segments' characters that is promotional")
    threshold: float


class ModerateRequest(_Strict):
    text: Text
    policy: Literal["flag", "strip"] = Field(
        default="flag", description="what to do with a document that holds promotion"
    )
    threshold: float | None = _threshold_field()


class PromotionalSpan(BaseModel):
    start: int
    end: int
    text: str
    score: float


class ModerateResponse(BaseModel):
    decision: Literal["allow", "flag", "strip"] = Field(
        description="allow: no promotion found; otherwise the policy"
    )
    clean_text: str | None = Field(
        description="the document without its promotional spans when the decision is strip, "
        "else null"
    )
    spans: list[PromotionalSpan] = Field(description="the promotional segments")
    promo_share: float
    threshold: float


# --- state and lifespan ---------------------------------------------------------------------


class _State:
    """The model and batcher of one process, and why they are not there yet."""

    def __init__(self) -> None:
        self.model: PromoFilter | None = None
        self.batcher: DynamicBatcher | None = None
        self.ready = False
        self.failure: str | None = None


def encode_counting_skips(model: PromoFilter, metrics: ServiceMetrics) -> BatchFunction:
    """``model.encode``, counting the texts its cascade scored without the encoder: the rows
    end with the n-gram read-outs that the cascade's gate reads."""

    def encode(texts: list[str]) -> np.ndarray:
        rows = model.encode(texts)
        if model.cascade is not None and model.lexical is not None:
            lexical = rows[:, rows.shape[1] - model.lexical.width :]
            metrics.skipped.inc(amount=float(model.cascade.skipped(lexical).sum()))
        return rows

    return encode


def load_model(settings: Settings) -> PromoFilter:
    """The model named by the settings (default: the shipped one)."""
    return promofilter.load(
        settings.model,
        threshold=settings.threshold,
        threads=settings.threads,
        batch_size=settings.model_batch_size,
        cascade=settings.cascade,
    )


class _Unavailable(Exception):
    def __init__(self, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after


def _error(status: int, detail: Any, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# --- ASGI middleware ------------------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_json(send: Send, status: int, body: Any, headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class _Metrics:
    """Counts each response by endpoint and status and times it (outermost layer)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status = 500  # stays so if the app fails before it answers
        started = time.perf_counter()

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.requests.inc(endpoint, str(status))
            self.metrics.latency.observe(time.perf_counter() - started, endpoint)


class _Auth:
    """401 without ``Authorization: Bearer <token>`` on every path but the health probes."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credentials.strip()
        if not hmac.compare_digest(given, self.token):
            detail = "invalid bearer token" if given else "missing bearer token"
            await _send_json(send, 401, {"detail": detail}, {"WWW-Authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


class _BodyLimit:
    """413 for a body over ``limit`` bytes, by its Content-Length or by the bytes that arrive
    (a chunked body has no Content-Length); the body is read here and replayed to the app."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = {"detail": f"request body larger than the limit of {self.limit} bytes"}
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send_json(send, 413, too_large, {"Connection": "close"})
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_json(send, 413, too_large, {"Connection": "close"})
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _Deadline:
    """503 for a ``/v1/`` request not answered within ``seconds`` (body reading included)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, watched_send), self.seconds)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            if started:
                raise
            detail = f"no answer within the deadline of {self.seconds:g} s; retry later"
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            await _send_json(send, 503, {"detail": detail}, headers)


# --- the app --------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, loader: ModelLoader = load_model) -> FastAPI:
    """The FastAPI app with its metrics, auth, deadline and body-size layers.

    Without ``settings`` they come from the environment (:meth:`Settings.from_env`), which is
    how uvicorn's ``--factory`` and each of its workers call it. ``loader`` turns the settings
    into a model (tests pass a slow or a failing one)."""
    settings = Settings.from_env() if settings is None else settings
    state = _State()
    metrics = ServiceMetrics(
        queue_depth=lambda: state.batcher.queued if state.batcher else 0,
        ready=lambda: 1.0 if state.ready else 0.0,
    )

    async def load_and_warm_up() -> None:
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(None, loader, settings)
            batcher = DynamicBatcher(
                encode_counting_skips(model, metrics),
                max_batch_size=settings.max_batch_size,
                max_wait_ms=settings.max_wait_ms,
                max_queued=settings.max_queued_segments,
                observe_batch=metrics.observe_batch,
                concurrency=settings.model_calls,
            )
            batcher.start()
            state.model, state.batcher = model, batcher
            await batcher.run(WARM_UP_TEXTS)
        except Exception as error:
            state.failure = f"{type(error).__name__}: {error}"
            logger.error("the model could not be loaded: %s", state.failure)
            return
        state.ready = True
        logger.info("model %s loaded and warmed up: ready", model.name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(load_and_warm_up())
        try:
            yield
        finally:
            # uvicorn has drained the in-flight requests by now (within its graceful timeout)
            if not loading.done():
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loading
            if state.batcher is not None:
                await state.batcher.stop()
            state.ready = False

    app = FastAPI(
        title="promofilter",
        version=promofilter.__version__,
        summary="Find, flag and strip promotional passages in German text.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = state
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # The input is left out: it may be a megabyte, or hold a lone surrogate that no JSON
        # encoder writes as UTF-8.
        detail = [
            {"loc": list(item.get("loc", ())), "msg": item.get("msg", ""), "type": item["type"]}
            for item in error.errors()
        ]
        return _error(422, detail)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Any:
        if error.status_code == 400:  # FastAPI's answer to a body json.loads cannot decode
            detail = [
                {
                    "loc": ["body"],
                    "msg": "the body is not JSON text in UTF-8",
                    "type": "json_invalid",
                }
            ]
            return _error(422, detail)
        return await http_exception_handler(request, error)

    @app.exception_handler(_Unavailable)
    async def unavailable(request: Request, error: _Unavailable) -> JSONResponse:
        return _error(error.status, error.detail, error.retry_after)

    def batcher_or_503() -> DynamicBatcher:
        if state.failure is not None:
            raise _Unavailable(503, f"the model could not be loaded: {state.failure}")
        if not state.ready or state.batcher is None:
            raise _Unavailable(503, "the model is still loading", RETRY_AFTER_SECONDS)
        return state.batcher

    async def encode(texts: list[str]) -> np.ndarray:
        batcher = batcher_or_503()
        try:
            return await batcher.run(texts)
        except QueueFull as full:
            raise _Unavailable(429, f"too busy: {full}; retry later", RETRY_AFTER_SECONDS) from full
        except BatcherStopped as stopped:
            raise _Unavailable(503, str(stopped), RETRY_AFTER_SECONDS) from stopped

    def threshold_of(requested: float | None) -> float:
        assert state.model is not None
        return state.model.threshold if requested is None else requested

    async def analyze(document: str, threshold: float) -> Analysis:
        model = state.model
        assert model is not None
        steps = analysis_steps([document], model.head, threshold, model.split_confidence)
        try:
            texts = next(steps)
            while True:
                texts = steps.send(await encode(texts))
        except StopIteration as finished:
            return finished.value[0]

    @app.get("/healthz", tags=["probes"], summary="Liveness")
    async def healthz() -> JSONResponse:
        if state.failure is not None:
            return JSONResponse({"status": "failed", "error": state.failure}, status_code=503)
        return JSONResponse({"status": "alive"})

    @app.get("/readyz", tags=["probes"], summary="Readiness: model loaded and warmed up")
    async def readyz() -> JSONResponse:
        if state.failure is not None:
            return JSONResponse({"status": "failed", "error": state.failure}, status_code=503)
        if not state.ready or state.model is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "model": state.model.name})

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    @app.post(f"{API_PREFIX}/classify", tags=["v1"], summary="Score a list of texts")
    async def classify(request: ClassifyRequest) -> ClassifyResponse:
        if len(request.texts) > settings.max_texts:
            detail = [
                {
                    "loc": ["body", "texts"],
                    "msg": f"{len(request.texts)} texts; at most {settings.max_texts} a request",
                    "type": "too_long",
                }
            ]
            raise RequestValidationError(detail)
        rows = await encode(request.texts)
        assert state.model is not None
        scores = state.model.head.alone(rows)
        threshold = threshold_of(request.threshold)
        return ClassifyResponse(
            results=[TextScore(score=float(s), label=label_of(s, threshold)) for s in scores],
            threshold=threshold,
        )

    @app.post(f"{API_PREFIX}/analyze", tags=["v1"], summary="Label each segment of a document")
    async def analyze_document(request: AnalyzeRequest) -> AnalyzeResponse:
        batcher_or_503()
        threshold = threshold_of(request.threshold)
        analysis = await analyze(request.text, threshold)
        return AnalyzeResponse(
            segments=[
                Segment(start=s.start, end=s.end, text=s.text, label=s.label, score=s.score)
                for s in analysis.segments
            ],
            label=analysis.label,
            promo_share=analysis.promo_share,
            threshold=threshold,
        )

    @app.post(f"{API_PREFIX}/moderate", tags=["v1"], summary="Allow, flag or strip a document")
    async def moderate(request: ModerateRequest) -> ModerateResponse:
        batcher_or_503()
        threshold = threshold_of(request.threshold)
        analysis = await analyze(request.text, threshold)
        promotional = analysis.promotional
        decision = request.policy if promotional else "allow"
        return ModerateResponse(
            decision=decision,
            clean_text=analysis.clean() if decision == "strip" else None,
            spans=[
                PromotionalSpan(start=s.start, end=s.end, text=s.text, score=s.score)
                for s in promotional
            ],
            promo_share=analysis.promo_share,
            threshold=threshold,
        )

    # The last one added is the outermost: metrics, auth, deadline, body size, the routes.
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(_Deadline, seconds=settings.request_timeout)
    app.add_middleware(_Auth, token=settings.token)
    app.add_middleware(_Metrics, metrics=metrics)
    return app
