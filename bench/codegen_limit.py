"""The whole night with Spark's whole-stage method limit at its default (65535) and at HotSpot's JIT limit (8000), to
decide whether the sessions should set ``spark.sql.codegen.hugeMethodLimit`` (issue 21; not set: docs/benchmarks.md).

``bench/night_ab.py codegen_limit`` under its earlier name: in one warm session, every nightly stage for ``--date``
at one limit, then at the other, ``--repeat`` rounds, which goes first alternating; every night must publish the
same lists and tables. Spark runs here: run it alone, on a root a nightly has run on.

    .venv/bin/python bench/codegen_limit.py --date 2026-11-20 --repeat 3

Writes ``bench/results/codegen_limit.json`` with the commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    from bench import night_ab

    return night_ab.main(["codegen_limit", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
