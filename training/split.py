"""Split the hand-written corpus by document into train, dev and test.

Near-duplicate documents are grouped first and a group never straddles two
splits: two documents are near-duplicates when the Jaccard similarity of their
normalised word 5-gram shingles reaches 0.5, or when they share a long
segment (12+ words) word for word after normalisation. Groups are ranked by a
seeded hash within each source prefix (the part of the id before the first
dash), so every topic area is spread over the three splits and the split is
the same on every run.

Documents in ``handwritten-train/`` go to train only, and those in ``handwritten-dev/`` to
dev only. They were written after the three splits were fixed, to grow the training data
and the dev split that chooses the threshold, without moving any other document: the test
split (and its pinned sha256) stays as it was, the figures of earlier models stay
comparable, and the annotators' labels (``agreement/``) keep covering it. None of them may
be a near-duplicate of a document in another split; the leak check names any that is.

    python -m training.split            # write the splits and refresh the dataset card
    python -m training.split --check    # verify that the committed splits are current
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from training.corpus import (
    AMBIGUOUS,
    PROMOTIONAL,
    Document,
    read_documents,
    sha256_file,
    write_documents,
)

DATA_DIR = Path(__file__).parent / "data"
HANDWRITTEN_DIR = DATA_DIR / "handwritten"
# documents written after the split was fixed, each directory feeding one split only
FIXED_SPLIT_DIRS = {
    "train": DATA_DIR / "handwritten-train",
    "dev": DATA_DIR / "handwritten-dev",
}
SPLITS_DIR = DATA_DIR / "splits"
CARD = DATA_DIR / "README.md"
DEFAULT_SEED = 13
FRACTIONS = {"train": 0.6, "dev": 0.2, "test": 0.2}
SHINGLE_SIZE = 5
NEAR_DUPLICATE_JACCARD = 0.5
LONG_SEGMENT_WORDS = 12
# What makes a document "hard": factual segments that carry promotional surface cues
# (ratings, questions, quoted slogans, talk about advertising), promotion without
# them, and noisy spelling. Most documents hold some hard negative by design, so
# the milder kinds (consumer advice, quotes, risk notes) do not count here.
HARD_FACTUAL_KINDS = (
    "criticised-slogan", "about-advertising", "analyst-rating", "rhetorical-question",
    "factual-question-headline", "affiliate-disclosure",
)  # fmt: skip
HARD_PROMOTIONAL_KINDS = ("soft-sell", "english-promo")
HARD_REGISTERS = ("typos", "ascii-umlauts", "all-caps")
STATS_START, STATS_END = "<!-- stats:start -->", "<!-- stats:end -->"


def normalise(text: str) -> str:
    """Case-, accent- and punctuation-blind form of a text, for duplicate checks."""
    text = text.casefold().replace("ß", "ss")
    for umlaut, folded in (("ä", "ae"), ("ö", "oe"), ("ü", "ue")):
        text = text.replace(umlaut, folded)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.findall(r"\w+", text))


def shingles(document: Document, size: int = SHINGLE_SIZE) -> set[str]:
    words = normalise(" ".join(s.text for s in document.segments)).split()
    if len(words) < size:
        return {" ".join(words)}
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicate_pairs(documents: Sequence[Document]) -> list[tuple[str, str, str]]:
    """Pairs of document ids that count as near-duplicates, with the reason."""
    sets = [shingles(d) for d in documents]
    index: dict[str, list[int]] = defaultdict(list)
    for position, shingle_set in enumerate(sets):
        for shingle in shingle_set:
            index[shingle].append(position)
    candidates = {pair for members in index.values() for pair in itertools.combinations(members, 2)}
    pairs = []
    for a, b in sorted(candidates):
        similarity = jaccard(sets[a], sets[b])
        if similarity >= NEAR_DUPLICATE_JACCARD:
            pairs.append((documents[a].id, documents[b].id, f"jaccard {similarity:.2f}"))
    owners: dict[str, str] = {}
    for document in documents:
        for segment in document.segments:
            key = normalise(segment.text)
            if len(key.split()) < LONG_SEGMENT_WORDS:
                continue
            owner = owners.setdefault(key, document.id)
            if owner != document.id:
                pairs.append((owner, document.id, "shared long segment"))
    return pairs


def duplicate_groups(documents: Sequence[Document]) -> list[list[str]]:
    """Connected components of the near-duplicate relation (union-find)."""
    parent = {d.id: d.id for d in documents}

    def root(item: str) -> str:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for a, b, _ in near_duplicate_pairs(documents):
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = defaultdict(list)
    for document in documents:
        groups[root(document.id)].append(document.id)
    return sorted(sorted(members) for members in groups.values())


def _rank(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(documents: Sequence[Document], seed: int = DEFAULT_SEED) -> dict[str, str]:
    """Map each document id to train, dev or test."""
    by_prefix: dict[str, list[list[str]]] = defaultdict(list)
    for group in duplicate_groups(documents):
        by_prefix[group[0].split("-")[0]].append(group)
    assignment: dict[str, str] = {}
    for prefix in sorted(by_prefix):
        groups = sorted(by_prefix[prefix], key=lambda g: _rank(g[0], seed))
        total = sum(len(g) for g in groups)
        placed = 0
        for group in groups:
            share = placed / total
            split = "train" if share < FRACTIONS["train"] else "dev"
            if share >= FRACTIONS["train"] + FRACTIONS["dev"]:
                split = "test"
            for doc_id in group:
                assignment[doc_id] = split
            placed += len(group)
    return assignment


def is_hard(document: Document) -> bool:
    kinds = {s.kind for s in document.segments}
    return bool(
        kinds & set(HARD_FACTUAL_KINDS)
        or kinds & set(HARD_PROMOTIONAL_KINDS)
        or set(document.register) & set(HARD_REGISTERS)
        or any(s.label == AMBIGUOUS for s in document.segments)
    )


def _read_directory(directory: Path) -> list[Document]:
    return [d for path in sorted(directory.glob("*.jsonl")) for d in read_documents(path)]


def _refuse_id_clashes(documents: Sequence[Document]) -> None:
    ids = Counter(d.id for d in documents)
    clashes = [doc_id for doc_id, count in ids.items() if count > 1]
    if clashes:
        raise ValueError(f"document ids used in more than one file: {sorted(clashes)}")


def read_handwritten(
    directory: Path = HANDWRITTEN_DIR,
    fixed_directories: Mapping[str, Path] = FIXED_SPLIT_DIRS,
) -> tuple[list[Document], dict[str, list[Document]]]:
    """The documents to split, and per split name those that go to that split only (none
    for a directory that does not exist)."""
    documents = _read_directory(directory)
    fixed = {
        name: _read_directory(path) if path.is_dir() else []
        for name, path in fixed_directories.items()
    }
    _refuse_id_clashes([*documents, *_chained(fixed)])
    return documents, fixed


def _chained(fixed: Mapping[str, Sequence[Document]]) -> list[Document]:
    return [document for documents in fixed.values() for document in documents]


def make_splits(
    documents: Sequence[Document],
    seed: int = DEFAULT_SEED,
    fixed: Mapping[str, Sequence[Document]] | None = None,
) -> dict[str, list[Document]]:
    """Split ``documents`` by hash; the documents in ``fixed`` join the split they are
    filed under and move nothing else."""
    fixed = fixed or {}
    unknown = sorted(set(fixed) - set(FRACTIONS))
    if unknown:
        raise ValueError(f"no split named {unknown}; the splits are {list(FRACTIONS)}")
    extra = _chained(fixed)
    _refuse_id_clashes([*documents, *extra])
    assignment = assign_splits(documents, seed)
    assignment.update({d.id: name for name, chosen in fixed.items() for d in chosen})
    splits: dict[str, list[Document]] = {name: [] for name in FRACTIONS}
    for document in sorted([*documents, *extra], key=lambda d: d.id):
        splits[assignment[document.id]].append(document)
    splits["test-hard"] = [d for d in splits["test"] if is_hard(d)]
    return splits


def leaks(splits: dict[str, Sequence[Document]]) -> list[str]:
    """Documents or near-duplicates found in more than one of train, dev and test."""
    home: dict[str, str] = {}
    problems = []
    for name in FRACTIONS:
        for document in splits[name]:
            if document.id in home:
                problems.append(f"{document.id} in both {home[document.id]} and {name}")
            home[document.id] = name
    everything = [d for name in FRACTIONS for d in splits[name]]
    for a, b, reason in near_duplicate_pairs(everything):
        if home[a] != home[b]:
            problems.append(f"{a} ({home[a]}) and {b} ({home[b]}) are near-duplicates: {reason}")
    return problems


def _table(title: str, rows: dict[str, Counter], columns: Iterable[str]) -> list[str]:
    columns = list(columns)
    lines = [f"**{title}**", "", "| | " + " | ".join(columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for key in sorted({k for counter in rows.values() for k in counter}):
        lines.append(f"| {key} | " + " | ".join(str(rows[c][key]) for c in columns) + " |")
    return [*lines, ""]


def card_statistics(splits: dict[str, Sequence[Document]], generated: Sequence[Document]) -> str:
    names = [*FRACTIONS, "test-hard"]
    labels, styles, placements, registers, kinds = (defaultdict(Counter) for _ in range(5))
    for name in names:
        for document in splits[name]:
            labels[name]["documents"] += 1
            styles[name][document.style or "unknown"] += 1
            placements[name][document.placement] += 1
            for register in document.register or ("standard",):
                registers[name][register] += 1
            for segment in document.segments:
                labels[name]["segments"] += 1
                labels[name][segment.label] += 1
                if segment.kind:
                    kinds[name][segment.kind] += 1
    labels["generated (train only)"].update(
        documents=len(generated),
        segments=sum(len(d.segments) for d in generated),
        **Counter(s.label for d in generated for s in d.segments),
    )
    lines = ["| split | documents | segments | promotional | factual | ambiguous |"]
    lines.append("|---|---|---|---|---|---|")
    for name, counter in labels.items():
        lines.append(
            f"| {name} | {counter['documents']} | {counter['segments']} | "
            f"{counter[PROMOTIONAL]} | {counter['factual']} | {counter[AMBIGUOUS]} |"
        )
    lines.append("")
    lines += _table("Documents per style", styles, names)
    lines += _table("Documents per placement of the promotion", placements, names)
    lines += _table("Documents per register", registers, names)
    lines += _table("Segments per kind (promotional forms and hard negatives)", kinds, names)
    lines += ["**sha256 of the split files**", "", "| file | sha256 |", "|---|---|"]
    for name in names:
        path = SPLITS_DIR / f"{name}.jsonl"
        lines.append(f"| `splits/{name}.jsonl` | `{sha256_file(path)}` |")
    return "\n".join(lines)


def refresh_card(statistics: str, card: Path = CARD) -> None:
    text = card.read_text(encoding="utf-8")
    if STATS_START not in text or STATS_END not in text:
        raise ValueError(f"{card}: markers {STATS_START} / {STATS_END} not found")
    head, rest = text.split(STATS_START, 1)
    _, tail = rest.split(STATS_END, 1)
    card.write_text(f"{head}{STATS_START}\n{statistics}\n{STATS_END}{tail}", encoding="utf-8")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.split", description=__doc__)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--check", action="store_true", help="only verify the committed split files"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from training.generate import generate_variants

    args = parse_args(argv)
    documents, fixed = read_handwritten()
    splits = make_splits(documents, args.seed, fixed)
    problems = leaks(splits)
    for problem in problems:
        print(f"leak: {problem}", file=sys.stderr)
    if args.check:
        stale = [
            name
            for name, documents in splits.items()
            if read_documents(SPLITS_DIR / f"{name}.jsonl") != documents
        ]
        for name in stale:
            print(
                f"stale: splits/{name}.jsonl differs from the hand-written files", file=sys.stderr
            )
        return 1 if stale or problems else 0
    for name, documents in splits.items():
        write_documents(SPLITS_DIR / f"{name}.jsonl", documents)
    refresh_card(card_statistics(splits, generate_variants(splits["train"])))
    for name, documents in splits.items():
        segments = sum(len(d.segments) for d in documents)
        print(f"{name}: {len(documents)} documents, {segments} segments", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
