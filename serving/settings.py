"""Settings of the HTTP service, read from ``PROMOFILTER_*`` environment variables.

uvicorn starts each worker by importing ``promofilter.service:create_app``; a factory called
without arguments can only learn its settings from the environment, which every worker
inherits. ``promofilter serve`` turns its options into these variables
(``promofilter.cli.serve_environment``).
This module imports neither FastAPI nor the model, so the command line can check the
settings before it starts anything.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# Tuned with benchmarks/load.py on 2 cores (docs/benchmarks.md, section "load").
DEFAULT_MAX_BATCH_SIZE = 128
# Rows per ONNX Runtime run within a model call. Runs are cut where the sorted lengths jump
# (promofilter.model.padded_runs), so this cap matters little: random calls of 65 test
# segments carried 4.4% padding with a cap of 16 or of 32, against 19% and 26% when runs
# were cut every 16 or 32 rows, as before that function.
DEFAULT_MODEL_BATCH_SIZE = 16
DEFAULT_MAX_WAIT_MS = 5.0
# Model calls at once, each on its own thread with DEFAULT_SERVICE_THREADS ONNX Runtime
# threads (see promofilter.batcher): at 16 clients on 2 cores, two calls of one thread each
# reached 78-95% of offline throughput in four runs of benchmarks/load.py, one call of two
# threads 72-76% in three, 2 x 2 threads 64%. With 1-4 clients the batcher splits a lone
# batch over the two calls, which made them faster than one call of two threads.
DEFAULT_MODEL_CALLS = 2
DEFAULT_SERVICE_THREADS = 1
DEFAULT_MAX_QUEUED_SEGMENTS = 1024
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_TEXTS = 1024
DEFAULT_REQUEST_TIMEOUT = 10.0


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message starts with the variable's
    name, which :attr:`variable` holds, so that the command line can name its option."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def _read_token_file(path: str) -> str:
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError("PROMOFILTER_TOKEN_FILE", f"cannot read {path} ({error})") from error
    if not token:
        raise SettingsError("PROMOFILTER_TOKEN_FILE", f"{path} is empty")
    return token


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(name, f"not an integer: {text!r}") from None
    if value < 1:
        raise SettingsError(name, f"must be at least 1, got {value}")
    return value


def _number(name: str, text: str, low: float, high: float = math.inf) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(name, f"not a number: {text!r}") from None
    if not low <= value <= high:
        bounds = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise SettingsError(name, f"must be {bounds}, got {text}")
    return value


def _boolean(name: str, text: str) -> bool:
    value = _BOOLEANS.get(text.lower())
    if value is None:
        raise SettingsError(name, f"must be one of {', '.join(_BOOLEANS)}, got {text!r}")
    return value


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class Settings:
    """What one service process needs; every field has a ``PROMOFILTER_<FIELD>`` variable
    (``PROMOFILTER_MODEL``, ``PROMOFILTER_MAX_WAIT_MS``, ...); the bearer token comes from
    ``PROMOFILTER_TOKEN_FILE`` (a file holding it) or else ``PROMOFILTER_TOKEN``."""

    model: str | None = None  # a model directory; None: the shipped model
    threshold: float | None = None  # None: the model's own
    threads: int = DEFAULT_SERVICE_THREADS  # ONNX Runtime threads per model call
    model_calls: int = DEFAULT_MODEL_CALLS  # model calls at once, each on its own thread
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE  # segments per model call
    model_batch_size: int = DEFAULT_MODEL_BATCH_SIZE  # rows per ONNX Runtime run in a call
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS  # how long a segment waits for batch mates
    max_queued_segments: int = DEFAULT_MAX_QUEUED_SEGMENTS  # above it: 429
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # above it: 413
    max_texts: int = DEFAULT_MAX_TEXTS  # texts per /v1/classify request
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # seconds; past it: 503
    token: str | None = None  # None: no authentication
    cascade: bool = True  # False: the encoder runs on every segment (promofilter.cascade)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``environ`` (default: ``os.environ``); unset variables keep their
        defaults. Raises :class:`SettingsError` naming the variable with a bad value."""
        environ = os.environ if environ is None else environ
        parsers: dict[str, Callable[[str, str], Any]] = {
            "model": lambda name, text: text,
            "threshold": lambda name, text: _number(name, text, 0.0, 1.0),
            "threads": _positive_int,
            "model_calls": _positive_int,
            "max_batch_size": _positive_int,
            "model_batch_size": _positive_int,
            "max_wait_ms": lambda name, text: _number(name, text, 0.0, 10_000.0),
            "max_queued_segments": _positive_int,
            "max_body_bytes": _positive_int,
            "max_texts": _positive_int,
            "request_timeout": lambda name, text: _number(name, text, 0.001),
            "cascade": _boolean,
        }
        values: dict[str, Any] = {}
        for field, parse in parsers.items():
            name = f"PROMOFILTER_{field.upper()}"
            text = environ.get(name, "").strip()
            if text:
                values[field] = parse(name, text)
        token_file = environ.get("PROMOFILTER_TOKEN_FILE", "").strip()
        if token_file:
            values["token"] = _read_token_file(token_file)
        elif environ.get("PROMOFILTER_TOKEN", "").strip():
            values["token"] = environ["PROMOFILTER_TOKEN"].strip()
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The variables that give these settings back through :meth:`from_env`, without the
        token (pass it as ``PROMOFILTER_TOKEN_FILE`` so that it stays out of the process
        environment's listing)."""
        env = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name != "token" and value is not None:
                env[f"PROMOFILTER_{field.name.upper()}"] = str(value)
        return env
