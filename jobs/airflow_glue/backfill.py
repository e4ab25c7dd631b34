"""An Airflow 3 backfill of the nightly DAG on this machine: the scheduler runs it, not `dags test`.

Where an Airflow deployment already runs, a backfill is one command and its scheduler does the rest:

    airflow backfill create --dag-id cpc_nightly --from-date 2026-11-01 --to-date 2026-11-20 --max-active-runs 1

Locally nothing runs between `make run`s, so this module starts what that command needs for the time of the
backfill (the API server that tasks report to, the DAG processor, the scheduler with the LocalExecutor, all
on the project's Airflow home), creates the backfill, shows each date's state until every run has finished,
and stops them. Each task runs in its own process with its own Spark session, as on a real deployment.

    .venv/bin/python -m jobs.airflow_glue.backfill --start 2026-11-19 --end 2026-11-20 [--max-active-runs 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

DAG_ID = "cpc_nightly"
DONE = {"success", "failed"}


def _airflow(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow", *args], env=env, check=check, capture_output=True, text=True)


def runs(env: dict[str, str], start: str, end: str) -> dict[str, str]:
    """logical date -> state of the DAG's runs in the range."""
    out = _airflow("dags", "list-runs", DAG_ID, "-o", "json", env=env)
    line = next((x for x in out.stdout.splitlines() if x.startswith("[")), "[]")
    return {r["logical_date"][:10]: r["state"] for r in json.loads(line) if start <= r["logical_date"][:10] <= end}


def backfill(start: str, end: str, max_active_runs: int = 1, port: int = 28080, timeout_s: int = 7200) -> dict[str, str]:
    home = Path(os.environ.get("AIRFLOW_HOME", "var/airflow")).resolve()
    log_dir = home / "backfill-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = _environment(home, port)
    _airflow("db", "migrate", env=env)
    _airflow("dags", "reserialize", env=env)
    services: dict[str, tuple[subprocess.Popen, IO[str]]] = {}
    try:
        _start_services(services, env, port, log_dir)
        time.sleep(5)
        _airflow("dags", "unpause", DAG_ID, env=env)
        _create_backfill(env, start, end, max_active_runs)
        return _follow(env, services, start, end, timeout_s, log_dir)
    finally:
        _airflow("dags", "pause", DAG_ID, env=env, check=False)
        _stop_services(services)


def _environment(home: Path, port: int) -> dict[str, str]:
    """The environment of every Airflow command and service of the backfill."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "1"),  # one Spark at a time here
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        # The scheduler and the API server must sign and check task tokens with the same secret.
        "AIRFLOW__API_AUTH__JWT_SECRET": os.environ.get("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_hex(16)),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # Only the backfill's runs: unpausing the DAG must not also start today's scheduled run.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    }


def _start_services(services: dict[str, tuple[subprocess.Popen, IO[str]]], env: dict[str, str], port: int,
                    log_dir: Path) -> None:
    """Start the API server, the DAG processor and the scheduler, each in its own session with its own log,
    adding each to ``services`` as it starts (so the caller stops those started if a later one fails)."""
    for name, args in (("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(port)]), ("dag-processor", ["dag-processor"]),
                       ("scheduler", ["scheduler"])):
        # Not named ``log``: that is the module's logger, used just below.
        out = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process in _stop_services
        services[name] = (subprocess.Popen([sys.executable, "-m", "airflow", *args], env=env, stdout=out, stderr=out,
                                           start_new_session=True), out)
    log.info(f"airflow backfill: api-server on :{port}, dag-processor, scheduler started (logs {log_dir})")


def _create_backfill(env: dict[str, str], start: str, end: str, max_active_runs: int) -> None:
    created = _airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", start, "--to-date", f"{end}T23:59:59",
                       "--max-active-runs", str(max_active_runs), "--reprocess-behavior", "completed", env=env, check=False)
    if created.returncode != 0 and "AlreadyRunningBackfill" in created.stderr + created.stdout:
        # A backfill stopped half-way (services killed): its runs are still in the database; the scheduler
        # resumes it, so follow it rather than fail.
        log.info(f"airflow backfill: a backfill of {DAG_ID} is already in progress; following it")
    elif created.returncode != 0:
        raise RuntimeError(f"airflow backfill create failed: {(created.stderr or created.stdout).strip()[-2000:]}")
    else:
        log.info(f"airflow backfill: created for {start}..{end}, at most {max_active_runs} run(s) at once")


def _follow(env: dict[str, str], services: dict[str, tuple[subprocess.Popen, IO[str]]], start: str, end: str,
            timeout_s: int, log_dir: Path) -> dict[str, str]:
    """Show each date's state as it changes until every run has finished; fail if a service stops."""
    deadline, last = time.time() + timeout_s, None
    while time.time() < deadline:
        for name, (proc, _) in services.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} stopped (exit {proc.returncode}); see {log_dir / (name + '.log')}")
        state = runs(env, start, end)
        if state != last:
            log.info("airflow backfill: " + ", ".join(f"{d} {s}" for d, s in sorted(state.items())))
            last = state
        if state and all(s in DONE for s in state.values()):
            return state
        time.sleep(10)
    raise TimeoutError(f"airflow backfill {start}..{end} not finished after {timeout_s}s")


def _stop_services(services: dict[str, tuple[subprocess.Popen, IO[str]]]) -> None:
    """SIGTERM each service's process group, SIGKILL those still running 30 s later; close the logs."""
    for proc, _out in services.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc, out in services.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        out.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", required=True)
    ap.add_argument("--end", required=True, help="last date, included (its run at the schedule's 02:00 too)")
    ap.add_argument("--max-active-runs", type=int, default=1)
    ap.add_argument("--port", type=int, default=28080)
    args = ap.parse_args(argv)
    t0 = time.time()
    state = backfill(args.start, args.end, args.max_active_runs, args.port)
    failed = [d for d, s in state.items() if s != "success"]
    log.info(f"airflow backfill: {len(state)} run(s) in {time.time() - t0:.0f}s; "
          + (f"failed: {', '.join(failed)}" if failed else "all succeeded"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
