"""The model's JSON files: reading one of a given kind, and the float arrays inside them.

Float arrays are stored as little-endian float32 in base64 rather than as JSON numbers:
parsing hundreds of thousands of JSON numbers makes as many Python floats, and the process
kept the memory they took (loading the shipped n-gram table added 28 MB of RSS as numbers,
19 MB packed); float32 keeps a text's scores within 1e-6 of the fitted model's.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import numpy as np

PACKED_DTYPE = "float32"


def read_kind(path: str | Path, kind: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path``, whose field ``kind`` must be ``kind``; a ValueError names
    the file and says what is wrong (``what`` names the file's content: "the cascade")."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read {what}: {error}") from error
    if not isinstance(raw, dict) or raw.get("kind") != kind:
        raise ValueError(f"{path}: field 'kind' must be {kind!r}")
    return raw


def write_json(path: str | Path, content: dict[str, Any], indent: int | None = None) -> None:
    """Write ``content`` to ``path`` whole or not at all (through a ``.partial`` file that
    replaces it), so that a kill never leaves half a file that reads as damaged."""
    path = Path(path)
    partial_file = path.with_name(path.name + ".partial")
    text = json.dumps(content, indent=indent, ensure_ascii=False) + "\n"
    partial_file.write_text(text, encoding="utf-8")
    partial_file.replace(path)


def packed(values: np.ndarray) -> dict[str, Any]:
    """``{"dtype": "float32", "shape": [...], "base64": "..."}`` for ``values``."""
    array = np.ascontiguousarray(values, dtype="<f4")
    return {
        "dtype": PACKED_DTYPE,
        "shape": list(array.shape),
        "base64": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def unpacked(value: Any, field: str, ndim: int = 1) -> np.ndarray:
    """The float64 array :func:`packed` wrote; a ValueError names the field and the fault."""
    if not isinstance(value, dict) or value.get("dtype") != PACKED_DTYPE:
        raise ValueError(
            f'field {field!r} must be {{"dtype": "{PACKED_DTYPE}", "shape": [...], '
            '"base64": "..."}'
        )
    shape = value.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != ndim
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise ValueError(f"field {field!r}: 'shape' must be {ndim} non-negative integer(s)")
    try:
        data = base64.b64decode(value.get("base64", ""), validate=True)
    except (binascii.Error, TypeError, ValueError) as error:
        raise ValueError(f"field {field!r}: 'base64' is not valid base64 ({error})") from error
    expected = 4 * int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(
            f"field {field!r}: {len(data)} bytes of data for shape {shape}, expected {expected}"
        )
    return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float64)
