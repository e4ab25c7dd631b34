"""Two `make run` roots compared, as a change that must alter no result is checked (issue 19's restructure).

    .venv/bin/python bench/compare_runs.py BEFORE_ROOT AFTER_ROOT [--date 2026-11-20] [--out bench/results/x.json]

- every exported list of the date: its data file byte for byte (the lists carry no run id), and its rows;
- every table of ``cluster_check.TABLES`` plus the propensity scores, the offers and the tag statistics, read
  with ``deltalake`` (no Spark), compared cell by cell with every bit of every double (``%.17g``) after sorting
  by the table's keys;
  ``gold.customer_tags`` over every snapshot date (the training snapshots too). The decision's ``run_id`` is left
  out: it names the run, and issue 19 changed how it is derived.

Both roots must have used the same phone-number hash key (``<root>/secrets/hash.key``) for ``msisdn_hash`` to be
comparable. Exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_check import TABLES, table_digest  # noqa: E402

MORE = {"gold.propensity": ("customer_id", "snapshot_date", "model"), "gold.cpc_offers": ("customer_id", "snapshot_date", "rank"),
        "gold.customer_tags@all": ("customer_id", "snapshot_date"), "gold.tag_stats": ("tag_id", "value"),
        "gold.fit_product_channel": ("product_id", "channel"), "gold.trial_funnel": ("customer_id", "product_id"),
        # every evaluation date: table_digest filters on snapshot_date or day only
        "gold.campaign_eval": ("eval_date", "level", "campaign_id", "channel", "product_id", "service_tier")}


def lists(root: Path, day: str) -> dict[str, dict]:
    """Each published list of the day: rows (from its manifest) and the SHA-256 of its gzip file as published."""
    out = {}
    for link in sorted(p for p in (root / "exports" / day).iterdir() if p.is_symlink()):
        manifest = json.loads((link / "manifest.json").read_text())
        data = (link / manifest["files"][0]["name"]).read_bytes()
        out[link.name] = {"rows": manifest["rows"], "gzip_sha256": hashlib.sha256(data).hexdigest(),
                          "text_sha256": hashlib.sha256(gzip.decompress(data)).hexdigest()}
    return out


def tables(root: Path, day: str) -> dict[str, dict]:
    out = {}
    for name, keys in {**TABLES, **MORE}.items():
        table, all_dates = name.removesuffix("@all"), name.endswith("@all")
        rows, digest = table_digest(root, table, keys, None if all_dates else day)
        out[name] = {"rows": rows, "sha256": digest}
    out["ops.cpc_runs run_id"] = run_id(root, day)  # the digests leave run_id out (cluster_check.VOLATILE)
    return out


def run_id(root: Path, day: str) -> dict:
    """The day's decision run id (ops.cpc_runs): from the day, the deliveries' and the configuration's fingerprints
    and the models used, so it must not change when only the code's speed does."""
    from deltalake import DeltaTable

    path = root / "lake" / "ops" / "cpc_runs"
    if not DeltaTable.is_deltatable(str(path)):
        return {"rows": 0, "sha256": None}
    df = DeltaTable(str(path)).to_pandas()
    ids = sorted(df[df["snapshot_date"].astype(str) == day]["run_id"])
    return {"rows": len(ids), "sha256": ",".join(ids)}  # the ids themselves under the key the digests use


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--date", default="2026-11-20")
    ap.add_argument("--out", type=Path, help="write the comparison as JSON here")
    args = ap.parse_args(argv)
    result = {"date": args.date, "roots": {"before": str(args.before), "after": str(args.after)}, "lists": {}, "tables": {}}
    for kind, read in (("lists", lists), ("tables", tables)):
        before, after = read(args.before, args.date), read(args.after, args.date)
        for name in sorted(set(before) | set(after)):
            same = before.get(name) == after.get(name)
            result[kind][name] = {"equal": same, "before": before.get(name), "after": after.get(name)}
            print(f"{kind[:-1]} {name}: {'equal' if same else 'DIFFERS'} {after.get(name, {}).get('rows')} rows")
    result["all_equal"] = all(v["equal"] for k in ("lists", "tables") for v in result[k].values())
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("all equal" if result["all_equal"] else "DIFFERENCES FOUND")
    return 0 if result["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
