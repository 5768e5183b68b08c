"""Multiply the hand-written training documents into labeled variants.

Every variant keeps each segment's label by construction. Three kinds of change
are combined at random, seeded:

* slot filling: companies, people, places, numbers and dates replaced
  consistently within a document;
* recombination: the factual body of one document with a promotional block
  taken from another, put at the start, in the middle or at the end; a
  document's factual body alone; several promotional blocks as a whole page;
* noise: casing, punctuation, umlaut folding, typos, whitespace.

Generated documents are for training only: only the training split is ever
passed in, so dev and test stay hand-written.

    python -m training.generate --input training/data/splits/train.jsonl \
        --output /tmp/train-generated.jsonl --per-document 6 --seed 13
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from training import lexicons
from training.corpus import PROMOTIONAL, Document, Segment, read_documents, write_documents

DEFAULT_SEED = 13
RECIPES = ("slots", "recombine", "factual-only", "whole-promo")
_RECIPE_WEIGHTS = (4, 4, 1, 1)


def _alternation(names: Sequence[str]) -> str:
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))


_COMPANY = re.compile(rf"(?<![\w-])({_alternation(lexicons.COMPANIES)})(?![\w])")
_PLACE = re.compile(rf"(?<![\w-])({_alternation(lexicons.PLACES)})(?![\w])")
_PERSON = re.compile(rf"\b({_alternation(lexicons.FIRST_NAMES)}) ([A-ZÄÖÜ][a-zäöüß]+)\b")
_DATE = re.compile(rf"\b([12]?\d|3[01])\. ({_alternation(lexicons.MONTHS)})\b")
# Numbers with German separators; four-digit years (19xx, 20xx) are left alone.
_NUMBER = re.compile(r"(?<![\w.,])(?!(?:19|20)\d\d\b)(\d{1,3}(?:\.\d{3})+|\d+)(,\d+)?(?![\w])")


def _scaled_number(match: re.Match, rng: random.Random) -> str:
    whole, fraction = match.group(1), match.group(2) or ""
    value = float(whole.replace(".", "") + fraction.replace(",", "."))
    scaled = value * rng.uniform(0.6, 1.6)
    decimals = len(fraction) - 1 if fraction else 0
    text = f"{scaled:,.{decimals}f}"  # 1,234.5
    grouped = "." in whole
    text = text.replace(",", "_").replace(".", ",").replace("_", "." if grouped else "")
    return text if scaled >= 1 or decimals else str(max(1, round(scaled)))


def fill_slots(document: Document, rng: random.Random) -> Document:
    """Replace names, places, numbers and dates, the same way throughout the document."""
    mapping: dict[str, str] = {}

    def consistent(pool: Sequence[str]) -> Callable[[re.Match], str]:
        def pick(match: re.Match) -> str:
            found = match.group(0)
            if found not in mapping:
                mapping[found] = rng.choice([name for name in pool if name != found])
            return mapping[found]

        return pick

    def person(match: re.Match) -> str:
        found = match.group(0)
        if found not in mapping:
            mapping[found] = f"{rng.choice(lexicons.FIRST_NAMES)} {rng.choice(lexicons.LAST_NAMES)}"
        return mapping[found]

    def date(match: re.Match) -> str:
        found = match.group(0)
        if found not in mapping:
            mapping[found] = f"{rng.randint(1, 28)}. {rng.choice(lexicons.MONTHS)}"
        return mapping[found]

    def number(match: re.Match) -> str:
        return _scaled_number(match, rng)

    substitutions = (
        (_COMPANY, consistent(lexicons.COMPANIES)),
        (_PLACE, consistent(lexicons.PLACES)),
        (_PERSON, person),
        (_DATE, date),
        (_NUMBER, number),
    )
    segments = []
    for segment in document.segments:
        text = segment.text
        for pattern, substitute in substitutions:
            text = pattern.sub(substitute, text)
        segments.append(replace(segment, text=text))
    return replace(document, segments=tuple(segments))


def promotional_blocks(document: Document) -> list[tuple[Segment, ...]]:
    """Maximal runs of consecutive promotional segments."""
    blocks: list[tuple[Segment, ...]] = []
    current: list[Segment] = []
    for segment in document.segments:
        if segment.label == PROMOTIONAL:
            current.append(segment)
        elif current:
            blocks.append(tuple(current))
            current = []
    if current:
        blocks.append(tuple(current))
    return blocks


def _factual_body(document: Document) -> list[Segment]:
    return [s for s in document.segments if s.label != PROMOTIONAL]


def recombine(document: Document, block: Sequence[Segment], rng: random.Random) -> Document:
    """The document's factual body with ``block`` at the start, in the middle or at the end."""
    body = _factual_body(document)
    position = rng.choice(("start", "middle", "end", "end"))
    index = {"start": 0, "end": len(body)}.get(position, rng.randint(1, max(1, len(body) - 1)))
    segments = body[:index] + list(block) + body[index:]
    return replace(document, segments=tuple(segments))


def _fold_umlauts(text: str) -> str:
    for umlaut, folded in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"),
                           ("Ü", "Ue"), ("ß", "ss")):  # fmt: skip
        text = text.replace(umlaut, folded)
    return text


def _typos(text: str, rng: random.Random) -> str:
    characters = list(text)
    letters = [
        i for i, c in enumerate(characters[:-1]) if c.isalpha() and characters[i + 1].isalpha()
    ]
    for position in rng.sample(letters, k=min(len(letters), rng.randint(1, 3))):
        action = rng.choice(("swap", "drop", "double"))
        if action == "swap":
            characters[position], characters[position + 1] = (
                characters[position + 1],
                characters[position],
            )
        elif action == "drop":
            characters[position] = ""
        else:
            characters[position] *= 2
    return "".join(characters)


def _casing(text: str, rng: random.Random) -> str:
    return text.upper() if rng.random() < 0.6 else text.lower()


def _punctuation(text: str, rng: random.Random) -> str:
    text = re.sub(r"[„“”»«]", '"', text)
    if rng.random() < 0.5:
        text = text.replace(",", "")
    return text.rstrip(".") if rng.random() < 0.5 else text


def _whitespace(text: str, rng: random.Random) -> str:
    gaps = [m.start() for m in re.finditer(" ", text)]
    for position in sorted(rng.sample(gaps, k=min(len(gaps), 2)), reverse=True):
        text = text[:position] + rng.choice(("  ", "\u00a0", " \t")) + text[position + 1 :]
    return text


_NOISES: tuple[Callable[[str, random.Random], str], ...] = (
    _typos,
    _casing,
    _punctuation,
    _whitespace,
)


def add_noise(document: Document, rng: random.Random) -> Document:
    """Noise on some segments; umlaut folding, when drawn, on the whole document."""
    fold = rng.random() < 0.25
    segments = []
    for segment in document.segments:
        text = _fold_umlauts(segment.text) if fold else segment.text
        if rng.random() < 0.35:
            text = rng.choice(_NOISES)(text, rng)
        segments.append(replace(segment, text=text.strip() or segment.text))
    register = tuple(sorted(set(document.register) | ({"ascii-umlauts"} if fold else set())))
    return replace(document, segments=tuple(segments), register=register)


def generate_variants(
    documents: Sequence[Document], per_document: int = 6, seed: int = DEFAULT_SEED
) -> list[Document]:
    """``per_document`` labeled variants of each document, reproducible for a given seed."""
    rng = random.Random(seed)
    blocks = [(d.id, block) for d in documents for block in promotional_blocks(d)]
    variants: list[Document] = []
    for document in documents:
        for number in range(per_document):
            recipe = rng.choices(RECIPES, weights=_RECIPE_WEIGHTS)[0]
            parents = [document.id]
            variant = document
            if recipe == "recombine" and blocks and _factual_body(document):
                donor, block = rng.choice(blocks)
                parents.append(donor)
                variant = recombine(document, block, rng)
            elif recipe == "factual-only" and _factual_body(document):
                variant = replace(document, segments=tuple(_factual_body(document)))
            elif recipe == "whole-promo" and blocks:
                chosen = rng.sample(blocks, k=min(len(blocks), rng.randint(1, 3)))
                parents = [donor for donor, _ in chosen]
                segments = tuple(s for _, block in chosen for s in block)
                variant = replace(document, segments=segments, style="advertorial")
            else:
                recipe = "slots"
            variant = fill_slots(variant, rng)
            if rng.random() < 0.5:
                variant = add_noise(variant, rng)
            variants.append(
                replace(
                    variant,
                    id=f"{document.id}~g{number + 1}",
                    source=f"generated:{recipe}:{'+'.join(parents)}",
                )
            )
    return variants


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.generate", description=__doc__)
    parser.add_argument("--input", required=True, type=Path, help="hand-written training split")
    parser.add_argument("--output", required=True, type=Path, help="JSONL file to write")
    parser.add_argument("--per-document", type=int, default=6, help="variants per document")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    variants = generate_variants(read_documents(args.input), args.per_document, args.seed)
    write_documents(args.output, variants)
    segments = sum(len(v.segments) for v in variants)
    print(f"wrote {len(variants)} documents, {segments} segments to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
