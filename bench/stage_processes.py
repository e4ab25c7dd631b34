"""Each nightly stage in a fresh process, as a scheduler's task runs it (issue 21, "the benchmark says it": each
stage's peak memory in a fresh process as the DAG runs it).

Under a real Airflow executor every task is a process of its own: it starts Python, the project's modules and a
Spark JVM, then runs one stage (``jobs.airflow_glue.tasks.run_stage``). ``airflow dags test`` and ``cpc nightly``
run all the stages in one process instead, so neither shows what one task costs nor how much memory one stage
needs. This runs ``cpc <stage> --date <date>`` for each stage of the nightly, in order, one process after another
on a root that has already run that date (reruns replace the same partitions: the same result), and records per
stage its wall seconds and the largest resident set of the process and its children (the JVM), sampled every
half second. Then it runs the whole nightly once more in ONE fresh process (``cpc nightly --date <date>
--no-summary``: every stage in order, each recorded in ``ops.run_log``, as the DAG's one task ``nightly`` runs them
with ``airflow.nightly_tasks: one``), recorded as the row "all stages, one process": eight tasks against one task,
in the same run. (The per-stage commands do not record; the one process's eight small ``ops.run_log`` appends are
in its seconds.)

    .venv/bin/python bench/stage_processes.py --root var --date 2026-11-20

``make bench`` runs the same as its last phases (``bench/nightly_bench.py``), where the in-session nightly of the
same run gives each stage's cold-process cost as a ratio. Standalone it writes
``bench/results/stage_processes_<root name>_<date>.json``; each process's output goes to
``<root>/work/stage_processes/<stage>.log`` (the one process's to ``all_stages.log``).
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


ONE_PROCESS = "all stages, one process"  # the row of the whole nightly in one fresh process


def cpc_command(stage: str, day: dt.date) -> list[str]:
    """The stage's command line, from the virtual environment this runs in."""
    return [sys.executable, "-m", "jobs.cli", stage, "--date", day.isoformat()]


def nightly_command(day: dt.date) -> list[str]:
    """Every nightly stage in order in one process, each recorded in ``ops.run_log`` (``pipeline.nightly``, the
    stage calls of the DAG's one task), without the summary the command would print after them."""
    return [sys.executable, "-m", "jobs.cli", "nightly", "--date", day.isoformat(), "--no-summary"]


def _environment(root: Path) -> dict[str, str]:
    env = {**os.environ, "CPC_ROOT": str(root)}
    env.setdefault("CPC_ENV", "local")
    return env


def run_stages(root: Path, day: dt.date, stages: list[str], progress: bool = True) -> list[dict]:
    """Each stage in its own process, in order, on ``root`` (``CPC_ROOT``); stops at the first that fails, naming
    its log."""
    env = _environment(root)
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


def run_one_process(root: Path, day: dt.date, progress: bool = True) -> dict:
    """The whole nightly of ``day`` in one fresh process on ``root`` (:func:`nightly_command`): its wall seconds and
    the peak resident set of its process tree; fails naming its log if the command fails."""
    log_file = root / "work" / "stage_processes" / "all_stages.log"
    command = nightly_command(day)
    got = {"stage": ONE_PROCESS, **run_measured(command, log_file, _environment(root))}
    if progress:
        print(f"stage processes: {ONE_PROCESS}: {got['seconds']} s, peak {got['peak_memory_gib']} GiB", flush=True)
    if got["returncode"] != 0:
        raise RuntimeError(f"`cpc {' '.join(command[3:])}` failed (exit {got['returncode']}): see {log_file}")
    return got


def warm_total(rows: list[dict]) -> float | None:
    """The stages' seconds in the warm session added up, when every stage has one (else None)."""
    warm = [r.get("in_session_seconds") for r in rows]
    return round(sum(warm), 1) if rows and all(warm) else None


def one_against_stages(one: dict, rows: list[dict]) -> dict:
    """The one process's row against the per-stage processes of the same run (``rows``) and, when every stage has
    one, against the warm session's nightly (the stages' ``in_session_seconds`` added up)."""
    stages, in_session = round(sum(r["seconds"] for r in rows), 1), warm_total(rows)
    return {**one, "in_session_seconds": in_session,
            "process_over_session": round(one["seconds"] / in_session, 2) if in_session else None,
            "stage_processes_seconds": stages,
            "stage_processes_over_one_process": round(stages / one["seconds"], 2) if one["seconds"] else None}


def against_session(processes: list[dict], in_session: dict[str, float]) -> list[dict]:
    """Each stage's fresh-process seconds against the same stage's seconds in one warm session (the ratio is the
    cold start a task pays: Python, the modules, a JVM, its JIT warm-up)."""
    rows = []
    for p in processes:
        warm = in_session.get(p["stage"])
        rows.append({**p, "in_session_seconds": warm,
                     "process_over_session": round(p["seconds"] / warm, 2) if warm else None})
    return rows


def table(rows: list[dict], one: dict | None = None) -> str:
    """The per-stage markdown table with a total row ("all stages": eight tasks) and, given ``one``
    (:func:`one_against_stages`), the row of every stage in one fresh process (one task)."""
    body = [[r["stage"], r["seconds"], r.get("in_session_seconds") or "", r.get("process_over_session") or "",
             r["peak_memory_gib"]] for r in rows]
    total, total_warm = round(sum(r["seconds"] for r in rows), 1), warm_total(rows)
    body.append(["all stages", total, total_warm or "", round(total / total_warm, 2) if total_warm else "",
                 max((r["peak_memory_gib"] for r in rows), default="")])
    if one:
        body.append([one["stage"], one["seconds"], one.get("in_session_seconds") or "",
                     one.get("process_over_session") or "", one["peak_memory_gib"]])
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
              "peak_memory_gib": max(r["peak_memory_gib"] for r in rows), "one_process": None,
              "command": f".venv/bin/python bench/stage_processes.py --root {args.root} --date {args.date}",
              "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **code}
    out = PROJECT / "bench" / "results" / f"stage_processes_{root.name}_{args.date}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")  # kept if the one process fails
    result["one_process"] = one = one_against_stages(run_one_process(root, args.date), rows)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows, one))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
