"""``python -m training COMMAND``: the training-side commands in one place."""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = {
    "build-default": "training.build",
    "base-model": "training.base_model",
    "vocab": "training.vocab",
    "generate": "training.generate",
    "split": "training.split",
    "evaluate": "training.evaluate",
    "baseline-reports": "training.baseline_reports",
}


def main(argv: Sequence[str] | None = None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        print(f"usage: python -m training COMMAND [ARGS]\ncommands: {names}", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
