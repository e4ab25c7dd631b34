"""The same nightly run on a Spark standalone cluster started on this machine, and on local Spark, compared.

    .venv/bin/python bench/cluster_check.py --customers 2000 --days 35        (or: make cluster-run)

1. starts a standalone master and two workers (one core each) on loopback from the installed Spark
   (``pyspark/bin/spark-class``), and waits until both workers have registered;
2. generates one operator's files and copies them into two storage roots under ``var/cluster/``;
3. runs ``cpc history`` and ``cpc nightly`` for the last date in each root, in its own process: once with
   ``CPC_ENV=local`` (``local[2]``) and once with ``CPC_ENV=cluster`` (``conf/env/cluster.yaml``: the master URL
   and executor memory are the only differences); no code changes between the two;
4. compares the two runs' tables (read with ``deltalake``, no Spark) and exported lists, and writes
   ``bench/results/cluster_check.json``; stops the cluster.

``--compare-only`` compares the two roots of the last run again without running anything. Tables are compared
with every bit of every double (``%.17g``). Exits 1 when anything differs. Tables compared: silver.customer_day, gold.customer_tags, gold.customer_segment,
gold.cpc_decisions (run ids aside: they carry the time of the run), gold.cpc_funnel, and every list's content.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

TABLES = {
    "silver.customer_day": ("customer_id", "day"),
    "gold.customer_tags": ("customer_id",),
    "gold.customer_segment": ("customer_id",),
    "gold.cpc_decisions": ("customer_id", "campaign_id", "product_id", "channel"),
    "gold.cpc_funnel": ("grain", "campaign_id", "channel", "step"),
}
VOLATILE = {"run_id"}


def spark_class() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def wait_port(port: int, seconds: float = 60) -> None:
    end = time.time() + seconds
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


def start_cluster(logs: Path, workers: int, worker_memory: str) -> list[subprocess.Popen]:
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    procs = [subprocess.Popen([spark_class(), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "7077",
                               "--webui-port", "8080"], stdout=open(logs / "master.log", "w"), stderr=subprocess.STDOUT, env=env)]
    wait_port(7077)
    for k in range(workers):
        procs.append(subprocess.Popen(
            [spark_class(), "org.apache.spark.deploy.worker.Worker", "spark://127.0.0.1:7077", "--cores", "1", "--memory", worker_memory,
             "--webui-port", str(8081 + k), "--work-dir", str(logs / f"work{k}")],
            stdout=open(logs / f"worker{k}.log", "w"), stderr=subprocess.STDOUT, env=env))
    end = time.time() + 90
    while time.time() < end:
        try:
            state = json.loads(urllib.request.urlopen("http://127.0.0.1:8080/json/", timeout=5).read())  # noqa: S310 - loopback
            if int(state.get("aliveworkers", 0)) >= workers:
                print(f"cluster: master spark://127.0.0.1:7077 with {state['aliveworkers']} workers, {state.get('cores')} cores", flush=True)
                return procs
        except OSError:
            pass
        time.sleep(1)
    stop(procs)
    raise RuntimeError(f"the workers did not register with the master in 90s (logs in {logs})")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def run_pipeline(root: Path, env_name: str, end: str, log: Path, key: str) -> float:
    # one phone-number hashing key for both runs, as a secrets backend would give each environment
    env = {**os.environ, "CPC_ENV": env_name, "CPC_ROOT": str(root), "CPC_HASH_KEY": key}
    cpc = str(PROJECT / ".venv" / "bin" / "cpc")
    t0 = time.time()
    with log.open("w") as fh:
        for cmd in ([cpc, "history", "--before", end], [cpc, "nightly", "--date", end]):
            r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
            if r.returncode:
                raise RuntimeError(f"{' '.join(cmd)} ({env_name}) failed, exit {r.returncode}; see {log}")
    return time.time() - t0


def table_digest(root: Path, name: str, keys: tuple[str, ...], end: str | None) -> tuple[int, str]:
    from deltalake import DeltaTable

    layer, table = name.split(".")
    df = DeltaTable(str(root / "lake" / layer / table)).to_pandas()
    date_col = next((c for c in ("snapshot_date", "day") if c in df.columns), None)
    if date_col and end and name != "silver.customer_day":  # end None: every date
        df = df[df[date_col].astype(str) == end]
    df = df.drop(columns=[c for c in VOLATILE if c in df.columns])
    df = df[sorted(df.columns)].sort_values(list(keys)).reset_index(drop=True)
    text = df.to_csv(index=False, float_format="%.17g")  # every bit of a double: equal means bit-identical
    return len(df), hashlib.sha256(text.encode()).hexdigest()


def list_digests(root: Path, end: str) -> dict[str, str]:
    out = {}
    for link in sorted((root / "exports" / end).iterdir()):
        if link.is_symlink():
            data = next(link.glob("*.csv.gz"))
            out[link.name] = hashlib.sha256(gzip.decompress(data.read_bytes())).hexdigest()
    return out


RESULT = PROJECT / "bench" / "results" / "cluster_check.json"


def run_both(base: Path, roots: dict[str, Path], end, args) -> dict[str, float]:
    """Generate the files once, run the nightly on local[2] and on the standalone cluster; seconds of each."""
    import secrets

    from jobs.platform.config import Paths
    from simulator.generate import SimSpec, generate

    shutil.rmtree(base, ignore_errors=True)
    spec = SimSpec(args.customers, args.days, end, 42)
    data = Paths(base / "files")
    generate(data, spec, progress=False)
    for root in roots.values():
        shutil.copytree(data.landing, root / "landing")
    print(f"cluster: {args.customers} customers, {args.days} days of files up to {end}", flush=True)
    key = secrets.token_hex(32)
    seconds = {"local": run_pipeline(roots["local"], "local", end.isoformat(), base / "local.log", key)}
    print(f"cluster: local[2] run done in {seconds['local']:.0f}s", flush=True)
    procs = start_cluster(base / "logs", args.workers, args.worker_memory)
    try:
        seconds["cluster"] = run_pipeline(roots["cluster"], "cluster", end.isoformat(), base / "cluster.log", key)
    finally:
        stop(procs)
    print(f"cluster: standalone run done in {seconds['cluster']:.0f}s", flush=True)
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--days", type=int, default=35)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-memory", default="5g")
    ap.add_argument("--compare-only", action="store_true", help="compare the two roots of the last run again, run nothing")
    args = ap.parse_args()

    from jobs.platform.config import settings

    base = PROJECT / "var" / "cluster"
    end = settings("local").sample_end_date
    roots = {name: base / name for name in ("local", "cluster")}
    result = {"customers": args.customers, "days": args.days, "date": end.isoformat(), "workers": args.workers}
    if args.compare_only:  # the sizes and times of the run that made the roots
        last = json.loads(RESULT.read_text()) if RESULT.exists() else {}
        result.update({k: last[k] for k in ("customers", "days", "workers", "seconds") if k in last})
    else:
        result["seconds"] = {k: round(v, 1) for k, v in run_both(base, roots, end, args).items()}
    result.update({"tables": {}, "lists": {}})
    same = True
    for name, keys in TABLES.items():
        a, b = table_digest(roots["local"], name, keys, end.isoformat()), table_digest(roots["cluster"], name, keys, end.isoformat())
        result["tables"][name] = {"rows": a[0], "equal": a == b}
        same &= a == b
        print(f"cluster: {name:<22} {a[0]:>8} rows  {'equal' if a == b else 'DIFFERENT'}", flush=True)
    la, lb = list_digests(roots["local"], end.isoformat()), list_digests(roots["cluster"], end.isoformat())
    for ch in sorted(set(la) | set(lb)):
        eq = la.get(ch) == lb.get(ch)
        result["lists"][ch] = eq
        same &= eq
        print(f"cluster: list {ch:<17} {'equal' if eq else 'DIFFERENT'}", flush=True)
    result["equal"] = same
    RESULT.write_text(json.dumps(result, indent=2))
    print(f"cluster: {'the cluster run equals the local run' if same else 'the runs DIFFER'} -> {RESULT}", flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
