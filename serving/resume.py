"""Crash-safe output for ``score`` and ``analyze``: committed chunks and a progress file.

A run that writes to a file works chunk by chunk. After each chunk it *commits*: the output
(and the ``--errors`` file) is flushed and fsync'ed, then the progress file
``OUTPUT.progress.json`` is replaced atomically (write a temporary file, fsync, rename,
fsync the directory). The progress file records what the output holds: the input records
consumed, the committed bytes of JSONL output or the committed part files of CSV and
Parquet output, and what the run depends on (the input's size and sha256, the model's
sha256, the options that change the output). A kill -9 at any moment therefore leaves a
committed prefix plus, at most, a partial chunk that no progress file mentions; ``--resume``
drops that partial chunk and goes on with the next input record.

- JSONL output is appended to in place; on resume it is truncated to the committed size.
- CSV and Parquet output cannot be appended to safely (a CSV header and a Parquet footer
  depend on every record), so each committed chunk is a part file in ``OUTPUT.parts/``
  (JSON lines for CSV, Parquet for Parquet); when the input is done the parts are merged into
  ``OUTPUT`` (a temporary file renamed into place), with the union of all records' columns.
- When the run is complete the progress file is deleted: its presence marks an unfinished
  output.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from promofilter.io import InputError, RecordWriter, _cell, _pyarrow_parquet
from promofilter.model import MODEL_FILE, TOKENIZER_FILE, sha256_of

STATE_VERSION = 1
PROGRESS_SUFFIX = ".progress.json"
PARTS_SUFFIX = ".parts"


def progress_path(output: str | Path) -> Path:
    """Where the progress file of an output lives: beside it, ``OUTPUT.progress.json``."""
    output = Path(output)
    return output.with_name(output.name + PROGRESS_SUFFIX)


def _fsync_directory(directory: Path) -> None:
    # a rename is durable only once its directory entry is
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new content."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def input_fingerprint(path: Path) -> dict[str, Any]:
    """The input's resolved path, size and sha256 of its whole content.

    The whole-file hash is robust (any edit, truncation or append is seen, a copy or a touch
    is not mistaken for a change, unlike mtime) and cheap: hashing reads ~1 GB/s, scoring
    handles well under 1 MB of text per second, so the hash costs a fraction of a percent of
    the run it protects.
    """
    return {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": sha256_of(path)}


def model_fingerprint(model_path: Path) -> dict[str, Any]:
    """The sha256 of the model's weights and tokenizer: what decides the scores."""
    return {
        "path": str(model_path.resolve()),
        "model_sha256": sha256_of(model_path / MODEL_FILE),
        "tokenizer_sha256": sha256_of(model_path / TOKENIZER_FILE),
    }


@dataclass
class RunState:
    """What a progress file holds: what the run depends on, and what has been committed."""

    input: dict[str, Any]
    model: dict[str, Any]
    options: dict[str, Any]
    consumed: int = 0  # input records (scored or malformed) whose output is committed
    output_committed: int = 0  # bytes of JSONL output, or part files of CSV/Parquet output
    errors_committed: int = 0  # bytes of the --errors file
    scored: int = 0
    errors: int = 0
    version: int = field(default=STATE_VERSION)

    @classmethod
    def read(cls, path: Path) -> RunState:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != STATE_VERSION:
                raise ValueError(f"version {raw.get('version')!r}, expected {STATE_VERSION}")
            return cls(**raw)
        except (OSError, ValueError, TypeError) as error:
            raise InputError(
                f"{path}: unreadable progress file ({error}); delete it and the output to "
                "start over"
            ) from error

    def save(self, path: Path) -> None:
        replace_atomically(path, json.dumps(asdict(self), indent=1).encode("utf-8"))

    def changes_from(self, saved: RunState) -> list[str]:
        """What differs between the run described by ``self`` and the ``saved`` one."""
        changes = []
        if (
            self.input["sha256"] != saved.input["sha256"]
            or self.input["size"] != saved.input["size"]
        ):
            changes.append(
                f"the input file changed ({saved.input['path']}: {saved.input['size']:,} bytes, "
                f"sha256 {saved.input['sha256'][:12]}… then; {self.input['path']}: "
                f"{self.input['size']:,} bytes, sha256 {self.input['sha256'][:12]}… now)"
            )
        for key, what in (("model_sha256", "model.onnx"), ("tokenizer_sha256", "tokenizer.json")):
            if self.model[key] != saved.model[key]:
                changes.append(
                    f"the model changed ({what} sha256 {saved.model[key][:12]}… then, "
                    f"{self.model[key][:12]}… now, in {self.model['path']})"
                )
        for key in sorted(set(self.options) | set(saved.options)):
            if self.options.get(key) != saved.options.get(key):
                changes.append(
                    f"{key} changed ({saved.options.get(key)!r} then, "
                    f"{self.options.get(key)!r} now)"
                )
        return changes


class JsonlSink:
    """JSON lines appended to a file; :meth:`commit` makes them durable and returns the size.

    Opening truncates the file to ``committed`` bytes, which drops whatever a killed run
    wrote after its last commit.
    """

    holds_errors = True

    def __init__(self, path: Path, committed: int = 0) -> None:
        self.path = path
        try:
            self._file: IO[bytes] = path.open("r+b" if path.exists() and committed else "wb")
        except OSError as error:
            raise InputError(f"{path}: cannot write it ({error.strerror})") from error
        size = self._file.seek(0, os.SEEK_END)
        if size < committed:
            self._file.close()
            raise InputError(
                f"{path} holds {size:,} bytes but its progress file says {committed:,} were "
                "committed: the output was changed after the run stopped; delete it and its "
                "progress file to start over"
            )
        self._file.truncate(committed)
        self._file.seek(committed)

    def write(self, records: list[dict[str, Any]]) -> None:
        if records:
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            self._file.write(lines.encode("utf-8"))

    def commit(self) -> int:
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def finish(self) -> None:
        self._file.close()


class PartsSink:
    """CSV or Parquet output as one part file per committed chunk, merged when the run ends."""

    holds_errors = True

    def __init__(self, path: Path, fmt: str, committed: int = 0) -> None:
        self.path, self.format = path, fmt
        self.directory = path.with_name(path.name + PARTS_SUFFIX)
        self._suffix = ".parquet" if fmt == "parquet" else ".jsonl"
        if fmt == "parquet":
            self._pq = _pyarrow_parquet()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.parts = committed
        for part in self.directory.iterdir():  # the parts of a chunk that was not committed
            if not part.name.endswith(self._suffix) or self._index(part) > committed:
                part.unlink()
        missing = [n for n in range(1, committed + 1) if not self._part(n).is_file()]
        if missing:
            raise InputError(
                f"{self.directory}: part {missing[0]} of {committed} committed parts is missing; "
                "delete the output, its parts and its progress file to start over"
            )
        self._pending: list[dict[str, Any]] = []

    def _part(self, number: int) -> Path:
        return self.directory / f"part-{number:08d}{self._suffix}"

    @staticmethod
    def _index(part: Path) -> int:
        digits = part.name.removeprefix("part-").split(".", 1)[0]
        return int(digits) if digits.isdigit() else 1 << 62

    def write(self, records: list[dict[str, Any]]) -> None:
        self._pending.extend(records)

    def commit(self) -> int:
        if not self._pending:
            return self.parts
        part = self._part(self.parts + 1)
        temporary = part.with_name(part.name + ".tmp")
        if self.format == "parquet":
            self._pq.write_table(_arrow_table(self._pending), temporary)
        else:
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self._pending)
            temporary.write_bytes(lines.encode("utf-8"))
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, part)
        _fsync_directory(self.directory)
        self.parts += 1
        self._pending = []
        return self.parts

    def finish(self) -> None:
        """Merge the parts into the output (a temporary file renamed into place)."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        parts = [self._part(n) for n in range(1, self.parts + 1)]
        if self.format == "parquet":
            _merge_parquet(self._pq, parts, temporary)
        else:
            _merge_csv(parts, temporary)
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        _fsync_directory(self.path.parent)

    def remove_parts(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _arrow_table(records: list[dict[str, Any]]) -> Any:
    import pyarrow

    # Table.from_pylist takes its columns from the first record alone: build every column
    columns = dict.fromkeys(key for record in records for key in record)
    try:
        return pyarrow.table({key: [r.get(key) for r in records] for key in columns})
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as error:
        raise InputError(
            f"cannot write these records as Parquet: a field holds values of different types "
            f"({error}); write JSONL instead"
        ) from error


def _json_lines(parts: list[Path]) -> Iterator[dict[str, Any]]:
    for part in parts:
        with part.open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


def _merge_csv(parts: list[Path], target: Path) -> None:
    columns: dict[str, None] = {}  # every record's fields, in the order first seen
    for record in _json_lines(parts):
        columns.update(dict.fromkeys(record))
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), restval="")
        if columns:
            writer.writeheader()
        for record in _json_lines(parts):
            writer.writerow({k: _cell(v) for k, v in record.items()})


def _merge_parquet(parquet: Any, parts: list[Path], target: Path) -> None:
    import pyarrow

    schemas = [parquet.read_schema(part) for part in parts]
    try:
        schema = pyarrow.unify_schemas(schemas, promote_options="permissive") if schemas else None
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as error:
        raise InputError(
            f"cannot merge the Parquet parts in {parts[0].parent}: a field holds values of "
            f"different types in different records ({error}); write JSONL instead"
        ) from error
    if schema is None:
        parquet.write_table(pyarrow.table({}), target)
        return
    with parquet.ParquetWriter(target, schema) as writer:
        for part in parts:
            # one part (one committed chunk) in memory at a time
            table = parquet.read_table(part)
            columns = [
                table.column(f.name).cast(f.type)
                if f.name in table.column_names
                else pyarrow.nulls(table.num_rows, f.type)
                for f in schema
            ]
            writer.write_table(pyarrow.Table.from_arrays(columns, schema=schema))


class StreamSink:
    """Standard output through :class:`RecordWriter`: nothing to commit, nothing to resume."""

    def __init__(self, writer: RecordWriter) -> None:
        self.writer = writer
        self.holds_errors = writer.holds_errors

    def write(self, records: list[dict[str, Any]]) -> None:
        self.writer.write_many(records)

    def commit(self) -> int:
        return 0

    def finish(self) -> None:
        self.writer.close()
