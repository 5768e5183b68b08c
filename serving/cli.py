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
import sys
from collections.abc import Sequence
from typing import IO, Any

from promofilter import __version__
from promofilter.io import (
    FORMATS,
    InputError,
    Record,
    RecordReader,
    RecordWriter,
    error_record,
)
from promofilter.progress import Progress

EXIT_OK = 0
EXIT_RECORD_ERRORS = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}    success
  {EXIT_RECORD_ERRORS}    one or more input records were malformed; each got an error record
       {{"_error": {{"line": N, "reason": "..."}}}} and the run went on (with --strict it
       stopped at the first)
  {EXIT_USAGE}    usage or input error: bad arguments, a missing or unreadable input file,
       an unknown format, pyarrow missing for Parquet
  {EXIT_MODEL}    the model could not be loaded (missing, damaged, or fails its sha256 check)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""

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


def _model_options() -> argparse.ArgumentParser:
    from promofilter.model import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_THREADS

    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("model")
    group.add_argument(
        "--model", metavar="DIR", help="model directory (default: the model shipped inside)"
    )
    group.add_argument(
        "--threshold", type=_threshold, help="P(promotional) cut-off (default: the model's)"
    )
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
    group.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return options


def _record_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "input", nargs="?", default="-", metavar="INPUT", help="input file; - or none: stdin"
    )
    options.add_argument("-o", "--output", metavar="OUTPUT", help="output file (default: stdout)")
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
        help="write error records to FILE (JSONL) instead of in line with the output "
        "(JSONL output) or to stderr (CSV and Parquet output)",
    )
    options.add_argument(
        "--strict", action="store_true", help="stop at the first malformed record (exit 1)"
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``promofilter`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    model, records = _model_options(), _record_options()
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
        parents=[records, model],
        help="add promo_score and label to each record",
        description="Score each record's text: P(promotional) as promo_score, and its label.",
        epilog=FORMAT_HELP + "\n" + EXIT_CODES,
        formatter_class=formatter,
    )
    commands.add_parser(
        "analyze",
        parents=[records, model],
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
        epilog=EXIT_CODES,
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
    from promofilter.model import DEFAULT_THREADS

    serve = commands.add_parser(
        "serve",
        help="run the HTTP service (POST /v1/classify, /v1/analyze, /v1/moderate)",
        description="Run the moderation service with uvicorn. Every option is also read from "
        "the PROMOFILTER_* environment variable named after it (the options win). The bearer "
        "token comes from --token-file or PROMOFILTER_TOKEN; with one set, every endpoint but "
        "/healthz and /readyz answers 401 without it.",
        epilog=SERVE_HINT,
        formatter_class=formatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    serve.add_argument(
        "--model", metavar="DIR", help="model directory (default: the model shipped inside)"
    )
    serve.add_argument(
        "--threshold", type=_threshold, help="P(promotional) cut-off (default: the model's)"
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes, each with its own model; give each --threads cores/workers "
        "(default: 1)",
    )
    serve.add_argument(
        "--threads",
        type=_positive,
        help=f"ONNX Runtime threads per worker (default: {DEFAULT_THREADS})",
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
    )


class _Run:
    """One pass of ``score`` or ``analyze`` over a reader, chunk by chunk, in input order."""

    def __init__(self, args: argparse.Namespace, model: Any, writer: RecordWriter) -> None:
        self.args = args
        self.model = model
        self.writer = writer
        self.failed = 0
        self.done = 0
        self.errors: IO[str] | None = None
        if args.errors:
            try:
                self.errors = open(args.errors, "w", encoding="utf-8")  # noqa: SIM115
            except OSError as error:
                raise InputError(f"{args.errors}: cannot write it ({error.strerror})") from error

    def results(self, records: list[Record]) -> list[dict[str, Any]]:
        field = self.args.text_field
        texts = [record.fields[field] for record in records]  # type: ignore[index]
        if self.args.command == "score":
            scores = self.model.predict_proba(texts)
            threshold = self.model.threshold
            return [
                {
                    **record.fields,  # type: ignore[dict-item]
                    "promo_score": round(float(score), 6),
                    "label": "promotional" if score >= threshold else "factual",
                }
                for record, score in zip(records, scores, strict=True)
            ]
        analyses = self.model.analyze_many(texts)
        return [
            {**record.fields, **analysis.to_dict()}  # type: ignore[dict-item]
            for record, analysis in zip(records, analyses, strict=True)
        ]

    def flush(self, pending: list[Record]) -> None:
        valid = [record for record in pending if record.error is None]
        results = iter(self.results(valid)) if valid else iter(())
        output, errors = [], []
        for record in pending:
            if record.error is None:
                output.append(next(results))
            elif self.errors is None and self.writer.holds_errors:
                output.append(error_record(record))
            else:
                errors.append(error_record(record))
        self.writer.write_many(output)
        stream = self.errors or sys.stderr
        for item in errors:
            stream.write(json.dumps(item, ensure_ascii=False) + "\n")
        self.done += len(valid)

    def close(self) -> None:
        if self.errors is not None:
            self.errors.close()


def _run_records(args: argparse.Namespace) -> int:
    analyze = args.command == "analyze"
    files = [args.input, args.output]
    if "-" not in files and None not in files and len({os.path.realpath(f) for f in files}) == 1:
        raise InputError(f"{args.output}: the output would overwrite the input")
    reader = RecordReader(args.input, args.input_format, args.text_field, whole_text=analyze)
    try:
        writer = RecordWriter(args.output, args.output_format)
        try:
            from promofilter.model import ModelLoadError

            try:
                model = _load(args)
            except ModelLoadError as error:
                _error(str(error))
                return EXIT_MODEL
            run = _Run(args, model, writer)
            try:
                return _loop(args, reader, run)
            finally:
                run.close()
        finally:
            writer.close()
    finally:
        reader.close()


def _loop(args: argparse.Namespace, reader: RecordReader, run: _Run) -> int:
    chunk = args.batch_size * 8 if args.command == "score" else max(1, args.batch_size // 2)
    progress = Progress(total=reader.total, enabled=not args.quiet and reader.path is not None)
    pending: list[Record] = []
    valid = 0
    first_error: Record | None = None
    for record in reader:
        pending.append(record)
        if record.error is not None:
            run.failed += 1
            first_error = first_error or record
            if args.strict:
                break
        else:
            valid += 1
        if valid >= chunk:
            run.flush(pending)
            progress.update(len(pending), reader.position)
            pending, valid = [], 0
    run.flush(pending)
    progress.update(len(pending), reader.position)
    progress.close()
    if first_error is None:
        return EXIT_OK
    where = f"{reader.name}, line {first_error.line}: {first_error.error}"
    if args.strict:
        _error(f"stopped at the first malformed record ({where})")
    else:
        _error(f"{run.failed} malformed record(s) got error records; the first: {where}")
    return EXIT_RECORD_ERRORS


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
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of our output went away (``promofilter score big.jsonl | head``)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
