"""The corpus format: documents made of labeled segments, one JSON object a line.

Every reader in the project goes through :func:`read_documents`, which checks
each line and reports what is wrong as ``file:line: field: reason``. A file is
either read whole or rejected with every error listed, so a bad record is never
dropped silently.

Run as a module to turn a plain-text page into a one-document corpus file::

    python -m training.corpus from-text ../shared/seed-article.txt \
        --promotional-lines 16-18 --output seed.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from promofilter.model import sha256_of
from promofilter.segment import Span, join_segments, segment_spans

FACTUAL = "factual"
PROMOTIONAL = "promotional"
AMBIGUOUS = "ambiguous"
LABELS = (FACTUAL, PROMOTIONAL)
ALL_LABELS = (*LABELS, AMBIGUOUS)

# Vocabularies for the optional metadata of the hand-written corpus. Foreign
# files may use other values (or none); the evaluation groups by whatever it finds.
PROMOTIONAL_KINDS = (
    "teaser", "read-more-link", "marker", "paywall", "newsletter", "boersenbrief", "webinar",
    "special-report", "broker", "comparison", "affiliate", "pennystock-hype", "crypto-presale",
    "course", "shop", "raffle", "app", "ui-call", "soft-sell", "english-promo", "other-promo",
    "trading-signals", "sponsored",
)  # fmt: skip
HARD_NEGATIVE_KINDS = (
    "analyst-rating", "rhetorical-question", "manager-quote", "about-advertising",
    "consumer-advice", "disclaimer", "affiliate-disclosure", "criticised-slogan", "risk-note",
    "factual-question-headline", "product-news",
)  # fmt: skip
STYLES = (
    "agency", "portal", "tabloid", "blog", "broadsheet", "regional", "press-release",
    "advertorial", "newsletter", "forum",
)  # fmt: skip
REGISTERS = ("austrian", "swiss", "ascii-umlauts", "typos", "emoji", "all-caps", "english")

_MAX_ERRORS_SHOWN = 20


class CorpusError(ValueError):
    """A corpus file that does not follow the format; the message lists every problem."""

    def __init__(self, path: str | Path, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        shown = self.problems[:_MAX_ERRORS_SHOWN]
        more = len(self.problems) - len(shown)
        lines = [f"{len(self.problems)} problem(s) in corpus file {self.path}:", *shown]
        if more:
            lines.append(f"... and {more} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Segment:
    text: str
    label: str
    kind: str | None = None


@dataclass(frozen=True)
class Document:
    id: str
    source: str
    segments: tuple[Segment, ...]
    topic: str | None = None
    style: str | None = None
    register: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)

    def joined(self) -> tuple[str, list[Span]]:
        """The document as one text (segments joined by a blank line) and the gold spans."""
        return join_segments([segment.text for segment in self.segments])

    @property
    def has_promotion(self) -> bool:
        return any(segment.label == PROMOTIONAL for segment in self.segments)

    @property
    def placement(self) -> str:
        """Where the promotion sits: none, whole, start, end, middle or several."""
        flags = [s.label == PROMOTIONAL for s in self.segments if s.label != AMBIGUOUS]
        if not any(flags):
            return "none"
        if all(flags):
            return "whole"
        first = flags.index(True)
        last = len(flags) - 1 - flags[::-1].index(True)
        if not all(flags[first : last + 1]):
            return "several"
        if last == len(flags) - 1:
            return "end"
        if first == 0:
            return "start"
        return "middle"

    def to_json(self) -> dict:
        record: dict = {"id": self.id, "source": self.source}
        if self.topic is not None:
            record["topic"] = self.topic
        if self.style is not None:
            record["style"] = self.style
        if self.register:
            record["register"] = list(self.register)
        record.update(self.extra)
        record["segments"] = [
            {"text": s.text, "label": s.label, **({"kind": s.kind} if s.kind else {})}
            for s in self.segments
        ]
        return record


def _check_segment(raw: object, where: str, problems: list[str]) -> Segment | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object, got {type(raw).__name__}")
        return None
    ok = True
    for name in ("text", "label"):
        if name not in raw:
            problems.append(f"{where}.{name}: missing field")
            ok = False
    text, label, kind = raw.get("text"), raw.get("label"), raw.get("kind")
    if "text" in raw:
        if not isinstance(text, str):
            problems.append(f"{where}.text: expected a string, got {type(text).__name__}")
            ok = False
        elif not text.strip():
            problems.append(f"{where}.text: empty text")
            ok = False
        elif "\n" in text or "\r" in text:
            problems.append(f"{where}.text: a segment is one line; found a line break")
            ok = False
    if "label" in raw and label not in ALL_LABELS:
        problems.append(f"{where}.label: unknown label {label!r} (expected one of {ALL_LABELS})")
        ok = False
    if kind is not None and not isinstance(kind, str):
        problems.append(f"{where}.kind: expected a string, got {type(kind).__name__}")
        ok = False
    return Segment(text, label, kind) if ok else None


def parse_document(line: str, where: str, problems: list[str]) -> Document | None:
    """Parse one JSONL line; append ``where: field: reason`` messages to ``problems``."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as error:
        problems.append(f"{where}: invalid JSON: {error.msg} (column {error.colno})")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a JSON object, got {type(raw).__name__}")
        return None
    start = len(problems)
    for name in ("id", "source", "segments"):
        if name not in raw:
            problems.append(f"{where}: {name}: missing field")
    doc_id, source, segments = raw.get("id"), raw.get("source"), raw.get("segments")
    if "id" in raw and (not isinstance(doc_id, str) or not doc_id.strip()):
        problems.append(f"{where}: id: expected a non-empty string, got {doc_id!r}")
    if "source" in raw and not isinstance(source, str):
        problems.append(f"{where}: source: expected a string, got {type(source).__name__}")
    parsed: list[Segment] = []
    if "segments" in raw:
        if not isinstance(segments, list) or not segments:
            problems.append(f"{where}: segments: expected a non-empty list")
        else:
            for index, item in enumerate(segments):
                segment = _check_segment(item, f"{where}: segments[{index}]", problems)
                if segment is not None:
                    parsed.append(segment)
    register = raw.get("register") or []
    if not isinstance(register, list) or not all(isinstance(r, str) for r in register):
        problems.append(f"{where}: register: expected a list of strings")
    if len(problems) > start:
        return None
    known = {"id", "source", "segments", "topic", "style", "register"}
    return Document(
        id=doc_id,
        source=source,
        segments=tuple(parsed),
        topic=raw.get("topic"),
        style=raw.get("style"),
        register=tuple(register),
        extra={key: value for key, value in raw.items() if key not in known},
    )


def read_documents(path: str | Path) -> list[Document]:
    """Read and check a corpus file; raise :class:`CorpusError` listing every problem."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as error:
        raise CorpusError(path, [f"{path}: cannot open: {error.strerror}"]) from error
    documents: list[Document] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    with handle:
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                document = parse_document(line, where, problems)
                if document is None:
                    continue
                if document.id in seen:
                    first = seen[document.id]
                    problems.append(
                        f"{where}: id: duplicate id {document.id!r} (first on line {first})"
                    )
                    continue
                seen[document.id] = number
                documents.append(document)
        except UnicodeDecodeError as error:
            problems.append(f"{path}: not valid UTF-8 at byte {error.start}")
    if problems:
        raise CorpusError(path, problems)
    if not documents:
        raise CorpusError(path, [f"{path}: no documents"])
    return documents


def write_documents(path: str | Path, documents: Iterable[Document]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for document in documents:
            handle.write(json.dumps(document.to_json(), ensure_ascii=False) + "\n")


def labeled_segments(documents: Iterable[Document]) -> tuple[list[str], np.ndarray]:
    """Texts and gold labels (True = promotional) of every segment; ambiguous ones left out."""
    segments = [s for d in documents for s in d.segments if s.label != AMBIGUOUS]
    return [s.text for s in segments], np.array([s.label == PROMOTIONAL for s in segments])


# one implementation, shared with the runtime's model integrity check
sha256_file = sha256_of


def parse_line_ranges(spec: str) -> set[int]:
    """Parse ``"3,16-18"`` into ``{3, 16, 17, 18}`` (1-based line numbers)."""
    numbers: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"bad line range {part!r}: use numbers like 16 or 16-18")
        numbers.update(range(int(low), int(high or low) + 1))
    return numbers


def document_from_text(
    text: str, promotional_lines: set[int], doc_id: str, source: str
) -> Document:
    """Label each non-blank line of a page; ``promotional_lines`` are 1-based line numbers."""
    line_starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]
    segments = []
    for span in segment_spans(text):
        line_number = sum(1 for start in line_starts if start <= span.start)
        label = PROMOTIONAL if line_number in promotional_lines else FACTUAL
        segments.append(Segment(span.text(text), label))
    return Document(id=doc_id, source=source, segments=tuple(segments))


def _from_text(args: argparse.Namespace) -> int:
    path = Path(args.input)
    text = path.read_text(encoding="utf-8")
    document = document_from_text(
        text,
        parse_line_ranges(args.promotional_lines),
        doc_id=args.id or path.stem,
        source=args.source or path.name,
    )
    write_documents(args.output, [document])
    promotional = sum(s.label == PROMOTIONAL for s in document.segments)
    print(
        f"wrote {args.output}: {len(document.segments)} segments, {promotional} promotional",
        file=sys.stderr,
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.corpus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from_text = commands.add_parser("from-text", help="label the lines of a plain-text page")
    from_text.add_argument("input", help="UTF-8 text file, one segment per non-blank line")
    from_text.add_argument(
        "--promotional-lines", required=True, help="1-based line numbers, e.g. 16-18 or 3,9"
    )
    from_text.add_argument("--output", "-o", required=True, help="JSONL file to write")
    from_text.add_argument("--id", help="document id (default: the file name without suffix)")
    from_text.add_argument("--source", help="source field (default: the file name)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return _from_text(args)


if __name__ == "__main__":
    raise SystemExit(main())
