"""Records in and out for the command line: JSONL, CSV, Parquet and plain text.

Readers never stop at a bad record: each yields a :class:`Record` that either holds the
record's fields or says, with its line number, why it cannot be used. Parquet goes through
pyarrow, imported only when a Parquet file is read or written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

FORMATS = ("jsonl", "csv", "parquet", "text")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
}
PYARROW_HINT = 'Parquet needs pyarrow: pip install "promofilter[scale]"'
# A text beyond this many characters is an error record, not a model call: a news article
# runs to 3,000-20,000 characters, so 100,000 catches a runaway field (a whole dump in one
# record) while any real page passes. It also bounds memory: a chunk holds at most
# chunk size x this many characters.
DEFAULT_MAX_CHARS = 100_000


class InputError(Exception):
    """The input or output as a whole cannot be used: a missing file, a wrong format."""


@dataclass
class Record:
    """One input record: ``fields`` when it is usable, else ``error`` says why."""

    line: int  # 1-based: the line of JSONL, text and CSV files, the row of a Parquet file
    fields: dict[str, Any] | None = None
    error: str | None = None

    @property
    def id(self) -> Any:
        return self.fields.get("id") if self.fields else None


def error_record(record: Record, id_field: str | None = None) -> dict[str, Any]:
    """The output record standing for a malformed input record.

    With ``id_field`` it carries the record's id, or its line (row) number where the record
    has none or could not be read; without, it carries an ``id`` field if the record had one.
    """
    result: dict[str, Any] = {"_error": {"line": record.line, "reason": record.error}}
    if id_field is not None:
        result[id_field] = record_id(record, id_field)
    elif record.id is not None:
        result["id"] = record.id
    return result


def record_id(record: Record, id_field: str) -> Any:
    """The value of ``id_field``, or the line (row) number where there is none."""
    value = record.fields.get(id_field) if record.fields else None
    return record.line if value is None else value


def detect_format(path: str | None, explicit: str | None, default: str = "jsonl") -> str:
    """The format named by ``explicit``, else the file's suffix, else ``default``."""
    if explicit:
        return explicit
    if path and path != "-":
        return _SUFFIXES.get(Path(path).suffix.lower(), default)
    return default


def _sniff(stream: IO[bytes]) -> str:
    """Guess the format of standard input from its first bytes: JSON lines, Parquet or text."""
    peek = getattr(stream, "peek", None)
    head = peek(64) if peek else b""
    if head.startswith(b"PAR1"):
        return "parquet"
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "text"


def text_problem(fields: dict[str, Any], text_field: str, max_chars: int) -> str | None:
    """Why a record's text cannot be scored (the reason of its error record), or None."""
    if text_field not in fields or fields[text_field] is None:
        return f"missing field {text_field!r}"
    value = fields[text_field]
    if not isinstance(value, str):
        return f"field {text_field!r} is {type(value).__name__}, expected a string"
    if len(value) > max_chars:
        return (
            f"field {text_field!r} has {len(value):,} characters, over the cap of "
            f"{max_chars:,} (--max-chars)"
        )
    return None


class RecordReader:
    """Iterate over the records of one input; ``position`` and ``total`` drive a progress bar
    (bytes for text formats, rows for Parquet; ``total`` is None for standard input)."""

    def __init__(
        self,
        path: str | None,
        fmt: str | None = None,
        text_field: str = "text",
        whole_text: bool = False,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.path = None if path in (None, "-") else Path(path)
        self.text_field = text_field
        self.max_chars = max_chars
        self.whole_text = whole_text
        self.position = 0
        self.total: int | None = None
        if self.path is None:
            self._stream: IO[bytes] = getattr(sys.stdin, "buffer", None) or io.BytesIO(
                sys.stdin.read().encode("utf-8")
            )
            self.format = fmt or _sniff(self._stream)
        else:
            if not self.path.is_file():
                problem = "is a directory" if self.path.is_dir() else "no such file"
                raise InputError(f"{self.path}: {problem}")
            self.format = detect_format(str(self.path), fmt, default="text")
            try:
                self._stream = self.path.open("rb")
            except OSError as error:
                raise InputError(f"{self.path}: cannot read it ({error.strerror})") from error
            self.total = self.path.stat().st_size
        if self.format not in FORMATS:
            raise InputError(f"unknown input format {self.format!r}; use one of {FORMATS}")
        self.name = str(self.path) if self.path else "<stdin>"
        if self.format == "parquet":  # read the footer now: errors come before the model loads
            try:
                self._parquet_file = self._open_parquet()
            except InputError:
                self.close()
                raise
            self.total = self._parquet_file.metadata.num_rows

    def close(self) -> None:
        if self.path is not None:
            self._stream.close()

    def __iter__(self) -> Iterator[Record]:
        if self.format == "parquet":
            yield from self._parquet()
            return
        reader = {"jsonl": self._jsonl, "csv": self._csv, "text": self._text}[self.format]
        for record in reader():
            if record.error is None and record.fields is not None:
                record.error = text_problem(record.fields, self.text_field, self.max_chars)
            yield record

    def _tell(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.position = self._stream.tell()

    def _lines(self) -> Iterator[tuple[int, str | None, str | None]]:
        """(line number, the decoded line without its line break or None, the problem)."""
        for number, raw in enumerate(self._stream, start=1):
            self._tell()
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield number, None, f"not valid UTF-8 ({error.reason} at byte {error.start})"
            else:
                yield number, line.rstrip("\r\n"), None

    def _jsonl(self) -> Iterator[Record]:
        for number, line, problem in self._lines():
            if problem:
                yield Record(number, error=problem)
                continue
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except ValueError as error:
                yield Record(number, error=f"invalid JSON: {error}")
                continue
            if not isinstance(fields, dict):
                yield Record(number, error=f"expected a JSON object, got {type(fields).__name__}")
                continue
            yield Record(number, fields)

    def _text(self) -> Iterator[Record]:
        if self.whole_text:
            data = self._stream.read()
            self.position = len(data)
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as error:
                yield Record(1, error=f"not valid UTF-8 ({error.reason} at byte {error.start})")
                return
            yield Record(1, {self.text_field: text})
            return
        for number, line, problem in self._lines():
            if problem:
                yield Record(number, error=problem)
            elif line.strip():
                yield Record(number, {"line": number, self.text_field: line})

    def _csv(self) -> Iterator[Record]:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        stream = io.TextIOWrapper(
            self._stream, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        try:
            reader = csv.DictReader(stream)
            try:
                header = reader.fieldnames
            except csv.Error as error:
                raise InputError(f"{self.name}: unreadable CSV header: {error}") from error
            if not header:
                return
            start = reader.line_num + 1
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as error:
                    yield Record(start, error=f"invalid CSV: {error}")
                    start = reader.line_num + 1
                    continue
                self._tell()
                number, start = start, reader.line_num + 1
                if None in row:
                    yield Record(number, error=f"more fields than the {len(header)} of the header")
                elif any(isinstance(v, str) and _has_surrogates(v) for v in row.values()):
                    yield Record(number, error="not valid UTF-8")
                else:
                    yield Record(number, dict(row))
        finally:
            stream.detach()  # closing the wrapper would close the file (or standard input)

    def _open_parquet(self) -> Any:
        parquet = _pyarrow_parquet()
        source = self._stream if self.path is not None else io.BytesIO(self._stream.read())
        try:
            return parquet.ParquetFile(source)
        except Exception as error:  # pyarrow's ArrowInvalid and friends
            raise InputError(f"{self.name}: not a readable Parquet file ({error})") from error

    def _parquet(self) -> Iterator[Record]:
        number = 0
        for batch in self._parquet_file.iter_batches(batch_size=1024):
            for fields in batch.to_pylist():
                number += 1
                self.position = number
                yield Record(number, fields, text_problem(fields, self.text_field, self.max_chars))


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as parquet
    except ImportError as error:
        raise InputError(PYARROW_HINT) from error
    return parquet


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value


class RecordWriter:
    """Write output records as JSONL or CSV to standard output.

    File outputs go through :mod:`promofilter.resume`, which commits them in chunks; this
    writer only checks file targets (:meth:`check`) and serves ``-o -`` or no ``-o``."""

    def __init__(self, fmt: str | None = None) -> None:
        self.format = detect_format(None, fmt)
        if self.format == "parquet":
            raise InputError("Parquet output needs a file: use -o FILE.parquet")
        if self.format not in ("jsonl", "csv"):
            raise InputError(f"cannot write {self.format!r} records; use jsonl, csv or parquet")
        self._csv: csv.DictWriter | None = None
        self._stream = self._open_text()

    @staticmethod
    def check(path: str | None, fmt: str | None = None) -> None:
        """Raise :class:`InputError` now if records cannot be written to ``path`` in ``fmt``."""
        target = None if path in (None, "-") else Path(path)
        output_format = detect_format(str(target) if target else None, fmt)
        if output_format not in ("jsonl", "csv", "parquet"):
            named = f"{target}: its suffix {target.suffix!r} means" if target and not fmt else ""
            raise InputError(
                f"{named or 'the output format is'} {output_format!r}, which cannot hold "
                "records; write .jsonl, .csv or .parquet, or pass --output-format"
            )
        if output_format == "parquet":
            _pyarrow_parquet()
            if target is None:
                raise InputError("Parquet output needs a file: use -o FILE.parquet")
        if target is not None:
            folder = target.parent if str(target.parent) else Path(".")
            if target.is_dir():
                raise InputError(f"{target}: is a directory")
            if not folder.is_dir() or not os.access(folder, os.W_OK):
                raise InputError(f"{target}: cannot write it (no writable directory {folder})")

    def _open_text(self) -> IO[str]:
        sys.stdout.flush()
        binary = getattr(sys.stdout, "buffer", None)
        if binary is None:
            return sys.stdout
        return io.TextIOWrapper(binary, encoding="utf-8", newline="", write_through=True)

    @property
    def holds_errors(self) -> bool:
        """Whether error records can go in line with the output (JSONL only)."""
        return self.format == "jsonl"

    def write_many(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self.format == "jsonl":
            self._stream.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            return
        if self._csv is None:
            # a stream cannot go back to widen its header: the first chunk's fields it is
            # (a file output, -o FILE.csv, takes the fields of every record)
            columns = dict.fromkeys(key for record in records for key in record)
            self._csv = csv.DictWriter(
                self._stream, fieldnames=list(columns), extrasaction="ignore"
            )
            self._csv.writeheader()
        self._csv.writerows({k: _cell(v) for k, v in r.items()} for r in records)

    def close(self) -> None:
        self._stream.flush()
        if isinstance(self._stream, io.TextIOWrapper) and self._stream is not sys.stdout:
            self._stream.detach()  # leave standard output open
