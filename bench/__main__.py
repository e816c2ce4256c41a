"""`make bench`: run every benchmark module and print its figures."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

SKIP = {"corpus"}  # helpers, not benchmarks


def main() -> int:
    here = Path(__file__).resolve().parent
    names = [m.name for m in pkgutil.iter_modules([str(here)]) if m.name not in SKIP and not m.name.startswith("_")]
    for name in sorted(names):
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}", flush=True)
        print(json.dumps(module.run(), indent=2, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
