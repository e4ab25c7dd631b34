"""Each nightly stage in a fresh process, as a scheduler's task runs it (issue 21, "the benchmark says it": each
stage's peak memory in a fresh process as the DAG runs it).

Under a real Airflow executor every task is a process of its own: it starts Python, the project's modules and a
Spark JVM, then runs one stage (``jobs.airflow_glue.tasks.run_stage``). ``airflow dags test`` and ``cpc nightly``
run all the stages in one process instead, so neither shows what one task costs nor how much memory one stage
needs. This runs ``cpc <stage> --date <date>`` for each stage of the nightly, in order, one process after another
on a root that has already run that date (reruns replace the same partitions: the same result), and records per
stage its wall seconds and the largest resident set of the process and its children (the JVM), sampled every
half second.

    .venv/bin/python bench/stage_processes.py --root var --date 2026-11-20

``make bench`` runs the same as its last phase (``bench/nightly_bench.py``), where the in-session nightly of the
same run gives each stage's cold-process cost as a ratio. Standalone it writes
``bench/results/stage_processes_<root name>_<date>.json``; each process's output goes to
``<root>/work/stage_processes/<stage>.log``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tabulate import tabulate

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def tree_rss(process) -> int:
    """Resident set size (bytes) of a ``psutil.Process`` and all its descendants (0 for one that has ended)."""
    total = 0
    try:
        family = [process, *process.children(recursive=True)]
    except Exception:  # noqa: BLE001 - the process may end while it is listed
        return 0
    for p in family:
        try:
            total += p.memory_info().rss
        except Exception:  # noqa: BLE001 - a child may end between listing and reading
            pass
    return total


def run_measured(command: list[str], log_file: Path, env: dict[str, str] | None = None, every: float = 0.5) -> dict:
    """Run ``command`` to its end with its output in ``log_file``: wall seconds, the peak resident set of its
    process tree in GiB (sampled every ``every`` seconds) and its exit code."""
    import psutil

    log_file.parent.mkdir(parents=True, exist_ok=True)
    t0, peak = time.time(), 0
    with log_file.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            peak = max(peak, tree_rss(watched))
            time.sleep(every)
    return {"seconds": round(time.time() - t0, 1), "peak_memory_gib": round(peak / 2**30, 2), "returncode": proc.returncode}


def cpc_command(stage: str, day: dt.date) -> list[str]:
    """The stage's command line, from the virtual environment this runs in."""
    return [sys.executable, "-m", "jobs.cli", stage, "--date", day.isoformat()]


def run_stages(root: Path, day: dt.date, stages: list[str], progress: bool = True) -> list[dict]:
    """Each stage in its own process, in order, on ``root`` (``CPC_ROOT``); stops at the first that fails, naming
    its log."""
    env = {**os.environ, "CPC_ROOT": str(root)}
    env.setdefault("CPC_ENV", "local")
    out = []
    for k, stage in enumerate(stages, 1):
        log_file = root / "work" / "stage_processes" / f"{stage}.log"
        got = {"stage": stage, **run_measured(cpc_command(stage, day), log_file, env)}
        out.append(got)
        if progress:
            print(f"stage processes [{k}/{len(stages)}] {stage}: {got['seconds']} s, peak {got['peak_memory_gib']} GiB",
                  flush=True)
        if got["returncode"] != 0:
            raise RuntimeError(f"`cpc {stage} --date {day}` failed (exit {got['returncode']}): see {log_file}")
    return out


def against_session(processes: list[dict], in_session: dict[str, float]) -> list[dict]:
    """Each stage's fresh-process seconds against the same stage's seconds in one warm session (the ratio is the
    cold start a task pays: Python, the modules, a JVM, its JIT warm-up)."""
    rows = []
    for p in processes:
        warm = in_session.get(p["stage"])
        rows.append({**p, "in_session_seconds": warm,
                     "process_over_session": round(p["seconds"] / warm, 2) if warm else None})
    return rows


def table(rows: list[dict]) -> str:
    """The per-stage markdown table, with a total row."""
    body = [[r["stage"], r["seconds"], r.get("in_session_seconds") or "", r.get("process_over_session") or "",
             r["peak_memory_gib"]] for r in rows]
    warm = [r.get("in_session_seconds") for r in rows]
    total_warm = round(sum(warm), 1) if all(warm) else ""
    body.append(["all stages", round(sum(r["seconds"] for r in rows), 1), total_warm, "",
                 max((r["peak_memory_gib"] for r in rows), default="")])
    return tabulate(body, ["stage (fresh process)", "seconds", "in one session", "ratio", "peak memory GiB"],
                    tablefmt="pipe", disable_numparse=True, colalign=["left", "right", "right", "right", "right"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path, help="a storage root that has run --date (make run's: var)")
    ap.add_argument("--date", required=True, type=dt.date.fromisoformat, help="the date to run again")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    os.environ["CPC_ROOT"] = str(root)
    from jobs.orchestration.registry import NIGHTLY_NAMES
    from jobs.platform.provenance import git_state

    code = git_state()
    rows = run_stages(root, args.date, list(NIGHTLY_NAMES))
    result = {"root": str(root), "date": args.date.isoformat(), "stages": rows,
              "seconds": round(sum(r["seconds"] for r in rows), 1),
              "peak_memory_gib": max(r["peak_memory_gib"] for r in rows),
              "command": f".venv/bin/python bench/stage_processes.py --root {args.root} --date {args.date}",
              "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **code}
    out = PROJECT / "bench" / "results" / f"stage_processes_{root.name}_{args.date}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
