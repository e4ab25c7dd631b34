"""Where the ingest's parse of one file kind spends its time: the parts of ``jobs.stages.ingest.transform.parse``
timed apart over the landing files of a root, in one session.

    .venv/bin/python bench/ingest_parse.py --root var --kind billing

Each part is one Spark action over every landing file of the kind (``<root>/landing/*/<kind>_*.csv.gz``), its
best of ``--repeat`` runs after one untimed warm-up: the lines read and numbered, the typed columns, each group of
row checks over the typed lines (shape, per-field values, the suite's row rules, the event date), the
duplicate-key window, the whole parse (reasons counted per file; without the CRM's known customers, which need a
lake) and Great Expectations on the cached parse. Nothing is written to the root. With ``--driver-log FILE``
(standard error redirected to it: ``2> FILE``) the code generation loggers are raised to INFO and each part records
what they said while it ran: whole-stage codegen given up, methods too long for the JIT (over 8,000 bytes of
bytecode a method is never compiled: it runs interpreted), the code generated (``bench/tags_breakdown.py``'s
patterns). The result goes to
``bench/results/ingest_parse_<kind>.json`` with the commit and the machine (docs/benchmarks.md, "Where the history
load's ingest goes").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tags_breakdown import _repeat_count, grep_log, log_size, raise_codegen_logging  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("var"), help="a data root with landing/ (make run's: var)")
    p.add_argument("--kind", default="billing", help="the file kind (schemas/: billing, usage, crm_profile...)")
    p.add_argument("--repeat", type=_repeat_count, default=2, help="timed runs of each part (the best is kept)")
    p.add_argument("--out", type=Path, default=None, help="default bench/results/ingest_parse_<kind>.json")
    p.add_argument("--driver-log", type=Path, default=None,
                   help="the file standard error is redirected to: searched per part for the code generation's messages")
    return p.parse_args(argv)


def check_groups(schema) -> dict[str, list[str]]:
    """The parse's row checks (``transform._field_checks``, in its order) in the groups timed apart."""
    from jobs.stages.ingest import quality
    from jobs.stages.ingest import transform as T

    values = T._value_checks(schema)
    rules = [T._reason(quality.violation(e), r) for r, e in quality.load_suite(schema.kind).row_rules()]
    checks = T._field_checks(schema)
    shape, event = checks[:2], checks[2 + len(values) + len(rules):]
    return {"shape (UTF-8, field count)": shape, "per-field values": values, "suite row rules": rules,
            "event date": event}


def parts(spark, schema, files: list[Path]) -> dict[str, Callable[[], object]]:
    """Name -> an action over the files, each starting from the files (nothing cached between parts)."""
    from pyspark.sql import functions as F

    from jobs.stages.ingest import transform as T

    def checked(checks: list[str]):
        return lambda: T._typed_lines(spark, schema, files).selectExpr(
            f"array_compact(array({', '.join(checks)})) AS _reasons").agg(F.sum(F.size("_reasons"))).first()[0]

    def duplicates():
        df, check = T._with_duplicates(T._typed_lines(spark, schema, files), schema)
        return df.selectExpr(f"{check} AS d").where("d IS NOT NULL").count()

    out = {"lines read and numbered": lambda: T.numbered_lines(spark, files).count(),
           "typed columns": lambda: T._typed_lines(spark, schema, files).agg(
               *[F.count(c.name) for c in schema.columns]).first()[0]}
    out.update({f"checks: {name}": checked(checks) for name, checks in check_groups(schema).items() if checks})
    out["duplicate-key window"] = duplicates
    out["whole parse"] = lambda: T.parse(spark, schema, files, None).groupBy("_source_file").agg(
        F.count(F.lit(1)), F.sum(F.size("_reasons"))).collect()
    return out


def log_since(path: Path | None, start: int | None) -> dict:
    """The code generation's messages the driver logged since ``start`` (``{}`` without a log)."""
    if path is None or start is None or not path.exists():
        return {}
    with path.open("rb") as f:
        f.seek(start)
        found = grep_log(f.read().decode("utf-8", "replace"))
    return {"log": {k: v for k, v in found["counts"].items() if v}, "code_generated_ms": found["code_generated_ms"]}


def great_expectations(spark, schema, files: list[Path]) -> float:
    """Seconds of the kind's suite on the cached parse (as the ingest runs it)."""
    from jobs.stages.ingest import quality
    from jobs.stages.ingest import transform as T

    parsed = T.parse(spark, schema, files, None).cache()
    parsed.count()
    t0 = time.time()
    quality.validate(schema.kind, parsed.select(*schema.names))
    seconds = time.time() - t0
    parsed.unpersist()
    return seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["CPC_ROOT"] = str(args.root.resolve())
    os.environ.setdefault("CPC_ENV", "local")
    from bench.nightly_bench import write_result
    from jobs.platform import logs
    from jobs.platform.config import settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark
    from schemas import FILES

    if args.kind not in FILES:
        raise SystemExit(f"--kind {args.kind}: not a file kind ({', '.join(FILES)})")
    files = sorted((args.root / "landing").glob(f"*/{args.kind}_*.csv.gz"))
    if not files:
        raise SystemExit(f"{args.root / 'landing'}: no {args.kind}_*.csv.gz files (make run writes them)")
    logs.setup()
    code, cfg = git_state(), settings()
    spark, schema = get_spark(cfg, app_name="cpc-ingest-parse"), FILES[args.kind]
    todo = parts(spark, schema, files)
    logging_ = raise_codegen_logging(spark) if args.driver_log else None
    todo["lines read and numbered"]()  # warm-up, untimed: the session's first job
    timed, rows = {}, None
    for name, fn in todo.items():
        runs, at = [], log_size(args.driver_log)()
        for _ in range(args.repeat):
            t0 = time.time()
            got = fn()
            runs.append(round(time.time() - t0, 2))
        if name == "whole parse":
            rows = sum(int(r[1]) for r in got)  # a row per file: its rows
        timed[name] = {"seconds": min(runs), "runs": runs, **log_since(args.driver_log, at)}
        print(f"ingest parse {args.kind}: {name} {min(runs):.2f}s (runs {runs})", flush=True)
    timed["great expectations (on the cached parse)"] = {"seconds": round(great_expectations(spark, schema, files), 2)}
    print(f"ingest parse {args.kind}: great expectations {timed['great expectations (on the cached parse)']['seconds']:.2f}s",
          flush=True)
    out = args.out or RESULTS / f"ingest_parse_{args.kind}.json"
    write_result(out, {"root": str(args.root.resolve()), "kind": args.kind, "files": len(files), "rows": rows,
                       "repeat": args.repeat, "codegen_logging": logging_,
                       "driver_log": str(args.driver_log) if args.driver_log else None, "parts": timed},
                 cfg, "bench/ingest_parse.py", argv if argv is not None else sys.argv[1:], code)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
