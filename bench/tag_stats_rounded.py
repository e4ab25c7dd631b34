"""``gold.tag_stats`` of two storage roots, every row of every date, compared as stored and with both sides' means
rounded as ``jobs.stages.tags.stats.stable_mean`` rounds them (no Spark: ``deltalake``).

The statistics of a root written before 9b29407 keep each mean at full precision, whose last bits depend on the
order Spark added the partial sums in; this tells whether two roots' statistics differ by more than that.

    .venv/bin/python bench/tag_stats_rounded.py BEFORE_ROOT AFTER_ROOT
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rows(root: str) -> list[dict]:
    from deltalake import DeltaTable

    return DeltaTable(f"{root}/lake/gold/tag_stats").to_pyarrow_table().to_pylist()


def keyed(table: list[dict], rounded: bool) -> list[str]:
    """Each row as a sortable text, its mean rounded when asked (every other cell as stored)."""
    from jobs.stages.tags.stats import stable_mean

    return sorted(repr(tuple((k, stable_mean(v) if rounded and k == "mean" else v) for k, v in sorted(r.items())))
                  for r in table)


def main(argv: list[str] | None = None) -> int:
    before, after = argv if argv is not None else sys.argv[1:]
    a, b = rows(before), rows(after)
    as_stored, rounded = keyed(a, False) == keyed(b, False), keyed(a, True) == keyed(b, True)
    print(f"tag_stats: {len(a)} / {len(b)} rows; equal as stored: {as_stored}; equal with the means rounded: {rounded}")
    return 0 if rounded else 1


if __name__ == "__main__":
    raise SystemExit(main())
