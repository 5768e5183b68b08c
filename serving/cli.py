"""The ``promofilter`` command: score records, analyze documents, clean a text.

    promofilter score   [INPUT] [-o OUTPUT]   records in, promo_score and label added
    promofilter analyze [INPUT] [-o OUTPUT]   documents in, segments, label, promo_share
                                              and clean_text added
    promofilter clean   FILE|-                the cleaned text on stdout
    promofilter serve   [--port 8000] ...     the HTTP service (needs the serve extra)

:func:`parse_args` is separate from :func:`main` so that both are tested in-process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promofilter import __version__
from promofilter.io import (
    DEFAULT_MAX_CHARS,
    FORMATS,
    InputError,
    Record,
    RecordReader,
    RecordWriter,
    detect_format,
    error_record,
    record_id,
    text_problem,
)
from promofilter.progress import Progress
from promofilter.resume import (
    PARTS_SUFFIX,
    JsonlSink,
    PartsSink,
    RunState,
    StreamSink,
    input_fingerprint,
    model_fingerprint,
    progress_path,
)

EXIT_OK = 0
EXIT_RECORD_ERRORS = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130

_RECORD_ERRORS_EXIT = f"""\
  {EXIT_RECORD_ERRORS}    one or more input records were malformed; each got an error record
       {{"_error": {{"line": N, "reason": "..."}}}} and the run went on (with --strict it
       stopped at the first)
"""
_OTHER_EXITS = f"""\
  {EXIT_USAGE}    usage or input error: bad arguments, a missing or unreadable input file,
       an unknown format, pyarrow missing for Parquet
  {EXIT_MODEL}    the model could not be loaded (missing, damaged, or fails its sha256 check)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""
EXIT_CODES = f"exit codes:\n  {EXIT_OK}    success\n{_RECORD_ERRORS_EXIT}{_OTHER_EXITS}"
# clean reads one text: a bad input is a usage error, never an error record
CLEAN_EXIT_CODES = f"exit codes:\n  {EXIT_OK}    success\n{_OTHER_EXITS}"

FORMAT_HELP = """\
formats: JSONL (.jsonl, .ndjson, .json), CSV (.csv, with a header row), Parquet (.parquet,
.pq; needs pip install "promofilter[scale]") and plain text (any other suffix). The format
follows the file suffix unless --input-format/--output-format say otherwise; standard input
is read as JSONL when it starts with "{" and as plain text otherwise. Plain text: score
takes one text per non-blank line, analyze takes the whole input as one document. Output
goes to standard output as JSONL unless -o names a file.
"""


def _threshold(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _add_model_choice(parser: Any) -> None:
    """--model and --threshold, the same for every subcommand that loads a model."""
    parser.add_argument(
        "--model", metavar="DIR", help="model directory (default: the model shipped inside)"
    )
    parser.add_argument(
        "--threshold", type=_threshold, help="P(promotional) cut-off (default: the model's)"
    )
    parser.add_argument(
        "--no-cascade",
        action="store_true",
        help="run the encoder on every text, also on those the model's character n-grams "
        "already decide (slower; the scores of the model without its cascade.json)",
    )


def _model_options() -> argparse.ArgumentParser:
    from promofilter.model import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_THREADS

    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("model")
    _add_model_choice(group)
    group.add_argument(
        "--threads",
        type=_positive,
        default=DEFAULT_THREADS,
        help=f"ONNX Runtime threads (default: {DEFAULT_THREADS})",
    )
    group.add_argument(
        "--batch-size",
        type=_positive,
        default=DEFAULT_BATCH_SIZE,
        help=f"texts per model call (default: {DEFAULT_BATCH_SIZE})",
    )
    group.add_argument(
        "--max-batch-tokens",
        type=_positive,
        default=DEFAULT_MAX_BATCH_TOKENS,
        help="cap on texts x padded tokens per model call, which bounds memory "
        f"(default: {DEFAULT_MAX_BATCH_TOKENS})",
    )
    return options


def _record_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "input", nargs="?", default="-", metavar="INPUT", help="input file; - or none: stdin"
    )
    options.add_argument("-o", "--output", metavar="OUTPUT", help="output file (default: stdout)")
    options.add_argument(
        "--quiet", "-q", action="store_true", help="no progress bar and no run summary"
    )
    options.add_argument(
        "--text-field", default="text", help="the field holding the text (default: text)"
    )
    options.add_argument("--input-format", choices=FORMATS, help="override the input's suffix")
    options.add_argument(
        "--output-format", choices=FORMATS[:3], help="override the output's suffix"
    )
    options.add_argument(
        "--errors",
        metavar="FILE",
        help="write error records to FILE (JSONL) instead of in line with the output (an "
        "_error field; an _error column in CSV and Parquet files; stderr for CSV on stdout)",
    )
    options.add_argument(
        "--strict", action="store_true", help="stop at the first malformed record (exit 1)"
    )
    options.add_argument(
        "--id-field",
        metavar="FIELD",
        help="the field holding each record's id: every output and error record carries it, "
        "with the line (row) number where a record has none (default: error records carry "
        "an 'id' field if there is one, and their line number)",
    )
    options.add_argument(
        "--max-chars",
        type=_positive,
        default=DEFAULT_MAX_CHARS,
        metavar="N",
        help="a text longer than N characters becomes an error record (default: "
        f"{DEFAULT_MAX_CHARS:,})",
    )
    options.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run that wrote OUTPUT (see OUTPUT.progress.json); "
        "refused if the input, the model or an option that changes the output differs",
    )
    return options


def _engine_options() -> argparse.ArgumentParser:
    """Where score and analyze run: this process, or Ray Data actors."""
    options = argparse.ArgumentParser(add_help=False)
    engine = options.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process, resumable (default); ray: Ray Data actors over a file or a "
        'directory of files (pip install "promofilter[scale]")',
    )
    engine.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="an existing Ray cluster (ray://HOST:10001, or auto); default: a local cluster",
    )
    engine.add_argument(
        "--ray-actors", type=_positive, default=2, metavar="N", help="model actors (default: 2)"
    )
    engine.add_argument(
        "--ray-cpus-per-actor",
        type=_positive,
        default=1,
        metavar="N",
        help="CPUs reserved per actor, also its ONNX Runtime threads (default: 1)",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``promofilter`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    model, records, engine = _model_options(), _record_options(), _engine_options()
    parser = argparse.ArgumentParser(
        prog="promofilter",
        description="Find, flag and strip promotional passages (clickbait teasers, calls to "
        "action) in German text.",
        epilog=EXIT_CODES,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"promofilter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "score",
        parents=[records, model, engine],
        help="add promo_score and label to each record",
        description="Score each record's text: P(promotional) as promo_score, and its label.",
        epilog=FORMAT_HELP + "\n" + EXIT_CODES,
        formatter_class=formatter,
    )
    commands.add_parser(
        "analyze",
        parents=[records, model, engine],
        help="add segments, label, promo_share and clean_text to each document",
        description="Analyse each record's text as a document: its segments (start, end, "
        "label, score, text), the document's label, the promotional share of its characters "
        "and the text with promotional segments removed.",
        epilog=FORMAT_HELP + "\n" + EXIT_CODES,
        formatter_class=formatter,
    )
    clean = commands.add_parser(
        "clean",
        parents=[model],
        help="print a text without its promotional segments",
        description="Print FILE (UTF-8 text) with its promotional segments removed; factual "
        "text stays byte for byte.",
        epilog=CLEAN_EXIT_CODES,
        formatter_class=formatter,
    )
    clean.add_argument("file", metavar="FILE", help="a text file, or - for stdin")
    _add_serve_parser(commands, formatter)
    return parser


SERVE_HINT = 'promofilter serve needs FastAPI and uvicorn: pip install "promofilter[serve]"'


def _non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return number


def _add_serve_parser(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    from promofilter import settings

    serve = commands.add_parser(
        "serve",
        help="run the HTTP service (POST /v1/classify, /v1/analyze, /v1/moderate)",
        description="Run the moderation service with uvicorn. Every option of the app (not "
        "--host, --port, --workers, --drain-timeout and --log-level, which are the server's) "
        "is also read from the PROMOFILTER_* environment variable named after it, "
        "--no-cascade from PROMOFILTER_CASCADE=false (the options win). The bearer "
        "token comes from --token-file or PROMOFILTER_TOKEN; with one set, every endpoint but "
        "/healthz and /readyz answers 401 without it.",
        epilog=SERVE_HINT,
        formatter_class=formatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    _add_model_choice(serve)
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes, each with its own model; give each --threads x --model-calls "
        "= cores/workers (default: 1)",
    )
    serve.add_argument(
        "--threads",
        type=_positive,
        help=f"ONNX Runtime threads per model call (default: {settings.DEFAULT_SERVICE_THREADS})",
    )
    serve.add_argument(
        "--token-file", metavar="FILE", help="file holding the bearer token clients must send"
    )
    limits = serve.add_argument_group("batching and limits")
    limits.add_argument(
        "--max-batch-size",
        type=_positive,
        help=f"segments per model call (default: {settings.DEFAULT_MAX_BATCH_SIZE})",
    )
    limits.add_argument(
        "--model-batch-size",
        type=_positive,
        help="rows per ONNX Runtime run within a model call "
        f"(default: {settings.DEFAULT_MODEL_BATCH_SIZE})",
    )
    limits.add_argument(
        "--model-calls",
        type=_positive,
        help="model calls at once, each on its own thread "
        f"(default: {settings.DEFAULT_MODEL_CALLS})",
    )
    limits.add_argument(
        "--max-wait-ms",
        type=_non_negative,
        help="how long a segment waits for batch mates "
        f"(default: {settings.DEFAULT_MAX_WAIT_MS:g})",
    )
    limits.add_argument(
        "--max-queued-segments",
        type=_positive,
        help="segments waiting for the model above which requests get 429 "
        f"(default: {settings.DEFAULT_MAX_QUEUED_SEGMENTS})",
    )
    limits.add_argument(
        "--max-body-bytes",
        type=_positive,
        help="request body limit in bytes; larger ones get 413 "
        f"(default: {settings.DEFAULT_MAX_BODY_BYTES})",
    )
    limits.add_argument(
        "--max-texts",
        type=_positive,
        help=f"texts per /v1/classify request (default: {settings.DEFAULT_MAX_TEXTS})",
    )
    limits.add_argument(
        "--request-timeout",
        type=_non_negative,
        help="seconds before a request gets 503 instead of an answer "
        f"(default: {settings.DEFAULT_REQUEST_TIMEOUT:g})",
    )
    limits.add_argument(
        "--drain-timeout",
        type=_non_negative,
        help="seconds SIGTERM waits for in-flight requests before the process exits; must "
        "exceed --request-timeout (default: request timeout + 5)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default: info)",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; exits with code 2 (usage) or 0 (--help) like argparse does."""
    return build_parser().parse_args(argv)


def _error(message: str) -> None:
    print(f"promofilter: error: {message}", file=sys.stderr)


def _load(args: argparse.Namespace):
    import promofilter

    return promofilter.load(
        args.model,
        threshold=args.threshold,
        threads=args.threads,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        cascade=not args.no_cascade,
    )


class _Run:
    """One pass of ``score`` or ``analyze`` over a reader, chunk by chunk, in input order.

    Each chunk's output and error records are written and then committed together with the
    run's progress (:mod:`promofilter.resume`), so an interrupted run can be resumed.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        model: Any,
        output: Any,
        errors: Any | None,
        state: Any | None,
    ) -> None:
        self.args = args
        self.model = model
        self.output = output  # a JsonlSink, PartsSink or StreamSink
        self.errors = errors  # a JsonlSink for --errors, or None
        self.state = state  # the RunState of a file output, None on standard output
        self.scored = 0
        self.failed = 0

    def results(self, records: list[Record]) -> list[dict[str, Any]]:
        field = self.args.text_field
        texts = [record.fields[field] for record in records]  # type: ignore[index]
        if self.args.command == "score":
            added = self.model.score_fields(texts)
        else:
            added = [analysis.to_dict() for analysis in self.model.analyze_many(texts)]
        results = [{**r.fields, **a} for r, a in zip(records, added, strict=True)]  # type: ignore[dict-item]
        if self.args.id_field:
            for record, result in zip(records, results, strict=True):
                result.setdefault(self.args.id_field, record_id(record, self.args.id_field))
        return results

    def flush(self, pending: list[Record]) -> None:
        valid = [record for record in pending if record.error is None]
        results = iter(self.results(valid)) if valid else iter(())
        output, errors = [], []
        for record in pending:
            if record.error is None:
                output.append(next(results))
            elif self.errors is None and self.output.holds_errors:
                output.append(error_record(record, self.args.id_field))
            else:
                errors.append(error_record(record, self.args.id_field))
        self.output.write(output)
        if self.errors is not None:
            self.errors.write(errors)
        else:
            for item in errors:  # CSV on standard output has no place for them
                sys.stderr.write(json.dumps(item, ensure_ascii=False) + "\n")
        self.scored += len(valid)
        self.failed += len(pending) - len(valid)
        self.commit(len(pending), len(valid))

    def commit(self, consumed: int, scored: int) -> None:
        output_size = self.output.commit()
        errors_size = self.errors.commit() if self.errors is not None else 0
        if self.state is not None:  # the progress file goes last: it vouches for the rest
            self.state.consumed += consumed
            self.state.scored += scored
            self.state.errors += consumed - scored
            self.state.output_committed = output_size
            self.state.errors_committed = errors_size
            self.state.save(progress_path(self.args.output))


def _same_file(first: str | None, second: str | None) -> bool:
    if first in (None, "-") or second in (None, "-"):
        return False
    return os.path.realpath(first) == os.path.realpath(second)


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse what would destroy a file before anything is loaded."""
    if _same_file(args.input, args.output):
        raise InputError(f"{args.output}: the output would overwrite the input")
    errors = args.errors
    if errors and (_same_file(errors, args.input) or _same_file(errors, args.output)):
        raise InputError(f"{args.errors}: the errors file would overwrite the input or output")
    to_stdout = args.output in (None, "-")
    if args.resume and to_stdout:
        raise InputError("--resume needs an output file (-o FILE): standard output cannot resume")
    if to_stdout:
        return
    progress = progress_path(args.output)
    if progress.exists() and not args.resume:
        raise InputError(
            f"{args.output}: an interrupted run left {progress}; rerun with --resume to "
            f"continue it, or delete {progress} to start over"
        )
    if args.resume and not progress.exists() and Path(args.output).exists():
        raise InputError(
            f"{args.output}: nothing to resume: the run that wrote it finished (there is no "
            f"{progress}); drop --resume to score the input again"
        )


def _output_options(args: argparse.Namespace, model: Any, output_format: str) -> dict[str, Any]:
    """The options that change what the output holds: a resume must use the same."""
    return {
        "command": args.command,
        "text_field": args.text_field,
        "id_field": args.id_field,
        "max_chars": args.max_chars,
        "threshold": model.threshold,
        "input_format": args.input_format,
        "output_format": output_format,
        "errors_file": str(Path(args.errors).resolve()) if args.errors else None,
        # which texts share a model call moves a score by float rounding only (~1e-7), but
        # that can flip the sixth decimal written out: an output keeps one chunking
        "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens,
    }


def _open_run(args: argparse.Namespace, reader: RecordReader, model: Any) -> _Run:
    """The sinks and, for a file output, the progress: new, or checked and resumed."""
    if args.output in (None, "-"):
        output = StreamSink(RecordWriter(args.output_format))
        errors = JsonlSink(Path(args.errors)) if args.errors else None
        return _Run(args, model, output, errors, state=None)
    output_format = detect_format(args.output, args.output_format)
    state = None
    if reader.path is None:  # written in committed chunks all the same, but not resumable
        if args.resume:
            raise InputError("--resume needs an input file: standard input cannot be reread")
    else:
        state = RunState(
            input=input_fingerprint(reader.path),
            model=model_fingerprint(model.path),
            options=_output_options(args, model, output_format),
        )
        progress = progress_path(args.output)
        if progress.exists():
            saved = RunState.read(progress)
            changes = state.changes_from(saved)
            if changes:
                raise InputError(f"cannot resume {args.output}: " + "; ".join(changes))
            state = saved
        else:
            state.save(progress)  # before the first byte of output: the output is unfinished
    committed = state or RunState(input={}, model={}, options={})
    path = Path(args.output)
    if output_format == "jsonl":
        output: Any = JsonlSink(path, committed.output_committed)
    else:
        output = PartsSink(path, output_format, committed.output_committed)
    errors = JsonlSink(Path(args.errors), committed.errors_committed) if args.errors else None
    return _Run(args, model, output, errors, state)


def _run_records(args: argparse.Namespace) -> int:
    _check_paths(args)
    if getattr(args, "engine", "local") == "ray":
        return _run_ray(args)
    analyze = args.command == "analyze"
    reader = RecordReader(
        args.input, args.input_format, args.text_field, whole_text=analyze, max_chars=args.max_chars
    )
    try:
        # an unwritable output or pyarrow missing must show before the model loads
        RecordWriter.check(args.output, args.output_format)
        from promofilter.model import ModelLoadError

        try:
            model = _load(args)
        except ModelLoadError as error:
            _error(str(error))
            return EXIT_MODEL
        run = _open_run(args, reader, model)
        return _loop(args, reader, run)
    finally:
        reader.close()


RAY_READERS = {"jsonl": "read_json", "csv": "read_csv", "parquet": "read_parquet"}


def _ray_input_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    formats = {detect_format(str(f), None, default="text") for f in files}
    formats.discard("text")
    if len(formats) != 1:
        found = ", ".join(sorted(formats)) or "no JSONL, CSV or Parquet file"
        raise InputError(f"{path}: found {found}; name the format with --input-format")
    return formats.pop()


def _run_ray(args: argparse.Namespace) -> int:
    """``score`` or ``analyze`` with ``--engine ray``: read with Ray Data, score on actors,
    write here in input order."""
    if args.resume:
        raise InputError("--resume works with --engine local only; rerun a Ray job whole")
    if args.input in (None, "-"):
        raise InputError("--engine ray reads a file or a directory, not standard input")
    source = Path(args.input)
    if not source.exists():
        raise InputError(f"{source}: no such file or directory")
    input_format = _ray_input_format(source, args.input_format)
    if input_format not in RAY_READERS:
        raise InputError(f"--engine ray reads JSONL, CSV or Parquet, not {input_format!r}")
    RecordWriter.check(args.output, args.output_format)
    from promofilter.model import ModelLoadError
    from promofilter.ray import analyze_dataset, import_ray, score_dataset

    try:
        ray = import_ray()
    except ImportError as error:
        raise InputError(str(error)) from error
    try:
        model = _load(args)  # fail here with exit 3, not in every actor
    except ModelLoadError as error:
        _error(str(error))
        return EXIT_MODEL
    started = time.monotonic()
    import logging

    started_here = not ray.is_initialized()  # a caller's cluster stays up
    if started_here:
        ray.init(address=args.ray_address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        reader = getattr(ray.data, RAY_READERS[input_format])
        options = {"lines": True} if input_format == "jsonl" else {}
        run = None
        try:
            # reading reserves no CPU: the actors hold the CPUs they score on, and a read task
            # that waited for a free CPU would wait for ever on a cluster the actors fill
            dataset = reader(str(source), num_cpus=0, **options)
            map_documents = score_dataset if args.command == "score" else analyze_dataset
            scored = map_documents(
                dataset,
                text_column=args.text_field,
                model=model.path,
                threshold=model.threshold,
                concurrency=args.ray_actors,
                num_cpus_per_actor=args.ray_cpus_per_actor,
                model_batch_size=args.batch_size,
                cascade=model.cascade is not None,
                max_chars=args.max_chars,
            )
            run = _open_ray_output(args, model)
            first_error = _write_ray_output(args, scored, run)
        except ray.exceptions.RayError as error:
            if run is not None:  # half an output that no rerun can resume
                _discard_output(args.output)
                if args.errors:
                    Path(args.errors).unlink(missing_ok=True)
            raise InputError(
                f"{source}: Ray Data could not read it ({_root_cause(error)}). --engine ray "
                "needs every record well-formed; --engine local turns each bad record into "
                "an error record"
            ) from error
        _finish(run)
    finally:
        if started_here:
            ray.shutdown()
    if not args.quiet:
        print(_summary(run, 0, time.monotonic() - started), file=sys.stderr)
    if first_error is None:
        return EXIT_OK
    where = f"{source}, row {first_error.line}: {first_error.error}"
    if args.strict:
        _error(f"stopped at the first malformed record ({where})")
    else:
        _error(f"{run.failed} malformed record(s) got error records; the first: {where}")
    return EXIT_RECORD_ERRORS


def _write_ray_output(args: argparse.Namespace, scored: Any, run: _Run) -> Record | None:
    """Write the scored rows in input order; a row without a usable text gets an error record,
    in line or in ``--errors``, with the local engine's reason. Returns the first such row
    (with ``--strict``, the row the job stopped at)."""
    row = 0
    first_error: Record | None = None
    for batch in scored.iter_batches(batch_format="pyarrow", batch_size=1024):
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for fields in batch.to_pylist():
            row += 1
            reason = text_problem(fields, args.text_field, args.max_chars)
            if reason is None:
                output.append(fields)
                run.scored += 1
                continue
            record = Record(row, fields, reason)
            first_error = first_error or record
            (output if run.errors is None else errors).append(error_record(record, args.id_field))
            run.failed += 1
            if args.strict:
                break
        run.output.write(output)
        run.output.commit()
        if run.errors is not None:
            run.errors.write(errors)
            run.errors.commit()
        if args.strict and first_error is not None:
            break
    return first_error


def _root_cause(error: BaseException) -> str:
    """The reader's own message: Ray wraps it in a task error with the remote traceback."""
    cause = getattr(error, "cause", None) or error  # RayTaskError keeps the original
    lines = [line for line in str(cause).splitlines() if line.strip()]
    # the first line: Ray appends its retry advice after the reader's message
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


def _discard_output(output: str | None) -> None:
    if output in (None, "-"):
        return
    path = Path(output)
    path.unlink(missing_ok=True)
    shutil.rmtree(path.with_name(path.name + PARTS_SUFFIX), ignore_errors=True)


def _open_ray_output(args: argparse.Namespace, model: Any) -> _Run:
    if args.output in (None, "-"):
        output: Any = StreamSink(RecordWriter(args.output_format))
    elif detect_format(args.output, args.output_format) == "jsonl":
        output = JsonlSink(Path(args.output))
    else:
        output = PartsSink(Path(args.output), detect_format(args.output, args.output_format))
    errors = JsonlSink(Path(args.errors)) if args.errors else None
    return _Run(args, model, output, errors, state=None)


def _summary(run: _Run, skipped: int, elapsed: float) -> str:
    done = run.scored + run.failed
    return (
        f"promofilter: scored {run.scored:,}, errors {run.failed:,}, skipped {skipped:,}, "
        f"elapsed {elapsed:.1f} s, "
        f"{done / max(elapsed, 1e-9):,.1f} records/s"
    )


def _loop(args: argparse.Namespace, reader: RecordReader, run: _Run) -> int:
    started = time.monotonic()
    chunk = args.batch_size * 8 if args.command == "score" else max(1, args.batch_size // 2)
    progress = Progress(total=reader.total, enabled=not args.quiet and reader.path is not None)
    skip = run.state.consumed if run.state is not None else 0
    pending: list[Record] = []
    valid = 0
    first_error: Record | None = None
    stopped = False
    try:
        for index, record in enumerate(reader):
            if index < skip:  # committed before the run was interrupted
                continue
            pending.append(record)
            if record.error is not None:
                first_error = first_error or record
                if args.strict:
                    stopped = True
                    break
            else:
                valid += 1
            # chunks end at the same records in a resumed run as in an uninterrupted one
            if valid >= chunk:
                run.flush(pending)
                progress.update(len(pending), reader.position)
                pending, valid = [], 0
        run.flush(pending)
        progress.update(len(pending), reader.position)
        _finish(run)
    finally:
        progress.close()
    if not args.quiet:
        print(_summary(run, skip, time.monotonic() - started), file=sys.stderr)
    total_errors = run.state.errors if run.state is not None else run.failed
    if total_errors == 0:
        return EXIT_OK
    if first_error is None:
        _error(f"{total_errors} malformed record(s) got error records in an earlier run")
        return EXIT_RECORD_ERRORS
    where = f"{reader.name}, line {first_error.line}: {first_error.error}"
    if stopped:
        _error(f"stopped at the first malformed record ({where})")
    else:
        _error(f"{total_errors} malformed record(s) got error records; the first: {where}")
    return EXIT_RECORD_ERRORS


def _finish(run: _Run) -> None:
    """Close the output; for a file output, merge any parts and delete the progress file."""
    run.output.finish()
    if run.errors is not None:
        run.errors.finish()
    if run.state is not None:
        # before the parts go: a crash in between can still merge them again
        progress_path(run.args.output).unlink()
    remove_parts = getattr(run.output, "remove_parts", None)
    if remove_parts is not None:
        remove_parts()


def _read_text(name: str) -> str:
    if name == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        if isinstance(data, str):
            return data
    else:
        try:
            with open(name, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise InputError(f"{name}: no such file") from None
        except OSError as error:
            raise InputError(f"{name}: cannot read it ({error.strerror})") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{name}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from error


def _write_stdout(text: str) -> None:
    sys.stdout.flush()
    binary = getattr(sys.stdout, "buffer", None)
    if binary is None:
        sys.stdout.write(text)
    else:
        binary.write(text.encode("utf-8"))  # bytes as they are: no newline translation
        binary.flush()


def _clean(args: argparse.Namespace) -> int:
    from promofilter.model import ModelLoadError

    text = _read_text(args.file)
    try:
        model = _load(args)
    except ModelLoadError as error:
        _error(str(error))
        return EXIT_MODEL
    _write_stdout(model.clean(text))
    return EXIT_OK


_SERVE_SETTINGS = (
    "model",
    "threshold",
    "threads",
    "max_batch_size",
    "model_batch_size",
    "model_calls",
    "max_wait_ms",
    "max_queued_segments",
    "max_body_bytes",
    "max_texts",
    "request_timeout",
)


def serve_environment(args: argparse.Namespace) -> dict[str, str]:
    """The ``PROMOFILTER_*`` variables that carry the ``serve`` options to uvicorn's workers
    (which build the app from the environment); unset options leave the variables alone."""
    env = {
        f"PROMOFILTER_{name.upper()}": str(getattr(args, name))
        for name in _SERVE_SETTINGS
        if getattr(args, name) is not None
    }
    if args.model is not None:
        env["PROMOFILTER_MODEL"] = os.path.abspath(os.path.expanduser(args.model))
    if args.no_cascade:
        env["PROMOFILTER_CASCADE"] = "false"
    if args.token_file is not None:
        env["PROMOFILTER_TOKEN_FILE"] = os.path.abspath(os.path.expanduser(args.token_file))
    return env


def _serve(args: argparse.Namespace) -> int:
    try:
        import promofilter.service  # FastAPI and pydantic
        import uvicorn
    except ImportError as error:
        _error(f"{SERVE_HINT} ({error})")
        return EXIT_USAGE
    from promofilter.model import ModelLoadError
    from promofilter.settings import Settings, SettingsError

    env = serve_environment(args)
    try:
        settings = Settings.from_env({**os.environ, **env})
    except SettingsError as error:
        if error.variable in env:  # the value came from an option: name the option
            option = "--" + error.variable.removeprefix("PROMOFILTER_").lower().replace("_", "-")
            _error(f"{option}: {error.problem}")
        else:
            _error(str(error))
        return EXIT_USAGE
    drain = settings.request_timeout + 5 if args.drain_timeout is None else args.drain_timeout
    if drain <= settings.request_timeout:
        _error(
            f"--drain-timeout ({drain:g} s) must exceed the request timeout "
            f"({settings.request_timeout:g} s), or SIGTERM could cut requests off unanswered"
        )
        return EXIT_USAGE
    if args.workers == 1:
        # fail before binding the port; the worker then reuses this session (same process)
        try:
            promofilter.service.load_model(settings)
        except ModelLoadError as error:
            _error(str(error))
            return EXIT_MODEL
    os.environ.update(env)
    uvicorn.run(
        "promofilter.service:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        timeout_graceful_shutdown=math.ceil(drain),
        log_level=args.log_level,
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see ``promofilter --help``)."""
    try:
        args = parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    try:
        if args.command == "clean":
            return _clean(args)
        if args.command == "serve":
            return _serve(args)
        return _run_records(args)
    except InputError as error:
        _error(str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        output = getattr(args, "output", None)
        if output not in (None, "-") and progress_path(output).exists():
            _error(f"interrupted; the committed part of {output} is kept: add --resume to go on")
        else:
            _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of our output went away (``promofilter score big.jsonl | head``)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
