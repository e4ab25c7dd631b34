"""The nightly run at a given size: generate the operator's files, load the history, run every nightly stage
for the last date, and report wall time per stage, rows per second and peak memory with the machine's cores
and memory.

    .venv/bin/python bench/nightly_bench.py --customers 100000 --days 90     (or: make bench CUSTOMERS=100000 DAYS=90)

Everything goes under ``var/bench/<customers>x<days>/`` (its own storage root; ``--keep-data`` reuses the
generated files of an earlier run of the same size). Peak memory is the largest resident set of this process
and its children (the Spark JVM) sampled every half second. Writes ``bench/results/nightly_<customers>x<days>.json``
and prints a markdown table. Propensity models are not trained here: the score stage uses the rule-based
fits, as a first night would (``bench/score_bench.py`` measures model scoring at 1 million customers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class PeakMemory:
    """Largest resident set size (bytes) of this process and all its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.5) -> None:
        import psutil

        self._me = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in [self._me, *self._me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001 - a child may end between listing and reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self._every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def machine() -> dict:
    import psutil

    return {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--end", default="2026-11-20", help="last delivery date (the nightly run's date)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep-data", action="store_true", help="reuse the landing files of an earlier run of this size")
    args = ap.parse_args(argv)

    name = f"{args.customers}x{args.days}"
    root = Path(os.environ.get("CPC_BENCH_ROOT", Path(__file__).resolve().parents[1] / "var" / "bench")) / name
    os.environ["CPC_ROOT"] = str(root)
    os.environ.setdefault("CPC_ENV", "local")
    import datetime as dt

    from jobs import pipeline
    from jobs.config import settings
    from jobs.simulate import SimSpec, generate
    from jobs.spark import get_spark

    cfg = settings()
    end = dt.date.fromisoformat(args.end)
    spec = SimSpec(args.customers, args.days, end, args.seed)
    stages: list[dict] = []

    def timed(stage: str, fn, count=None, unit: str = ""):
        t0 = time.time()
        out = fn()
        seconds = time.time() - t0
        n = count(out) if count else None
        stages.append({"stage": stage, "seconds": round(seconds, 1), "count": n, "unit": unit,
                       "per_second": round(n / seconds) if n and seconds > 0 else None})
        print(f"bench {name}: {stage} {seconds:.1f}s" + (f", {n:,} {unit}" if n else ""), flush=True)
        return out

    with PeakMemory() as mem:
        if not (args.keep_data and (root / "landing").exists()):
            for sub in ("landing", "truth", "lake", "archive", "exports", "reports", "checkpoints"):
                shutil.rmtree(root / sub, ignore_errors=True)
            timed("simulate", lambda: generate(cfg.paths, spec, progress=False), lambda t: sum(t.values()), "rows")
        else:
            for sub in ("lake", "archive", "exports", "reports"):
                shutil.rmtree(root / sub, ignore_errors=True)
        get_spark(cfg, app_name=f"cpc-bench-{name}")
        timed("history (ingest + conform of earlier days)", lambda: pipeline.history(end, cfg), len, "days")
        for stage in pipeline.STAGES:
            timed(f"nightly: {stage}", lambda s=stage: pipeline.STAGE_FUNCS[s](end, cfg), lambda _o: args.customers, "customers")
            pipeline.record(end, stage, cfg)
    nightly = sum(s["seconds"] for s in stages if s["stage"].startswith("nightly:"))
    result = {"customers": args.customers, "days": args.days, "run_date": args.end, "machine": machine(),
              "spark_master": cfg.spark_master, "nightly_seconds": round(nightly, 1),
              "peak_memory_gib": round(mem.peak / 2**30, 2), "stages": stages,
              "command": f".venv/bin/python bench/nightly_bench.py --customers {args.customers} --days {args.days}",
              "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    out = Path(__file__).resolve().parent / "results" / f"nightly_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print()
    print(f"Nightly run at {args.customers:,} customers, {args.days} days ({result['machine']['cores']} cores, "
          f"{result['machine']['memory_gib']} GiB): nightly {nightly:.0f} s, peak memory {result['peak_memory_gib']} GiB")
    print("| stage | seconds | of | per second |")
    print("|---|---:|---:|---:|")
    for s in stages:
        print(f"| {s['stage']} | {s['seconds']} | {s['count'] or ''} {s['unit']} | {s['per_second'] or ''} |")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
