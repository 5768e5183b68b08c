"""What the cascade skips and changes, on the test split and on text unlike the corpus.

    python -m benchmarks.cascade [--model models/default] [--catalogues GLOB]

For each text set: the share of texts the cascade lets skip the encoder, the share flagged
promotional with and without the cascade, the share whose label it changes and the largest
change of P(promotional), each text scored on its own (``predict_proba``). The sets are the
test split's segments and, as text unlike the corpus, the German program messages of the
machine's translation catalogues (``/usr/share/locale/de/LC_MESSAGES/*.mo``: 40-300
characters, one line, at most 3,000 drawn with a fixed seed), where the machine has them.
Prints the figures and writes the "cascade" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gettext
import glob
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.report import machine, write_section
from benchmarks.runtime import DEFAULT_DATA, REPO, read_split, shown

CATALOGUES = "/usr/share/locale/de/LC_MESSAGES/*.mo"
MAX_MESSAGES = 3000


def catalogue_messages(pattern: str, limit: int = MAX_MESSAGES) -> list[str]:
    """Translated messages of 40-300 characters on one line from the ``.mo`` files."""
    messages = set()
    for path in sorted(glob.glob(pattern)):
        try:
            with open(path, "rb") as handle:
                catalog = gettext.GNUTranslations(handle)._catalog
        except (OSError, ValueError):
            continue  # not a catalogue gettext can read
        for value in catalog.values():
            if isinstance(value, str) and 40 <= len(value) <= 300 and "\n" not in value:
                messages.add(value)
    chosen = sorted(messages)
    random.Random(0).shuffle(chosen)
    return chosen[:limit]


def figures(model_dir: Path, texts: Sequence[str]) -> dict:
    import promofilter

    shipped = promofilter.load(model_dir)
    exact = promofilter.load(model_dir, cascade=False)
    if shipped.cascade is None:
        raise SystemExit(f"{model_dir} has no cascade.json")
    skipped = shipped.cascade.skipped(shipped.lexical.rows(texts))
    with_cascade = shipped.predict_proba(texts)
    without = exact.predict_proba(texts)
    flagged, flagged_exact = with_cascade >= shipped.threshold, without >= shipped.threshold
    return {
        "texts": len(texts),
        "skipped": round(float(skipped.mean()), 4),
        "flagged": round(float(flagged.mean()), 4),
        "flagged_without_cascade": round(float(flagged_exact.mean()), 4),
        "labels_changed": round(float((flagged != flagged_exact).mean()), 4),
        "max_abs_dp": round(float(np.abs(with_cascade - without).max()), 4),
    }


def markdown(results: dict, model_dir: Path, pattern: str) -> str:
    rows = [
        f"| {name} | {r['texts']} | {r['skipped']:.1%} | {r['flagged']:.1%} "
        f"| {r['flagged_without_cascade']:.1%} | {r['labels_changed']:.2%} | {r['max_abs_dp']} |"
        for name, r in results.items()
    ]
    return "\n".join(
        [
            "## Cascade: `python -m benchmarks.cascade`",
            "",
            f"`python -m benchmarks.cascade --model {shown(model_dir)}`; {machine()}. Each text "
            "scored on its own (`predict_proba`) with the cascade and with `cascade=False`; "
            f"program messages: `{pattern}`, 40-300 characters, at most {MAX_MESSAGES:,}.",
            "",
            "| texts | count | skip the encoder | flagged | flagged without cascade "
            "| labels changed | max abs. change of P |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Program messages are not what the model is for (imperatives such as instructions "
            "read like calls to action, hence the many flags); they show how often, on text "
            "unlike the corpus, the n-grams are sure enough to skip the encoder, and how many "
            "labels the cascade then changes.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cascade", description=__doc__)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "default")
    parser.add_argument("--catalogues", default=CATALOGUES, help="glob of .mo files")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    model_dir = args.model.resolve()
    sets = {"test split segments": read_split(DEFAULT_DATA)[0]}
    messages = catalogue_messages(args.catalogues)
    if messages:
        sets["program messages (German .mo catalogues)"] = messages
    results = {name: figures(model_dir, texts) for name, texts in sets.items()}
    print(json.dumps(results, indent=2))
    if not args.no_write:
        print(f"wrote {write_section('cascade', markdown(results, model_dir, args.catalogues))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
