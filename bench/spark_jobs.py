"""What a night's Spark jobs are: each job of a Spark event log put in a kind, counted and timed by the stage of
the night it ran in.

`bench/night_fixed_cost.py` counts a small night's Spark jobs (some 550) and `bench/night_calls.py` the driver's
waits on the JVM; neither says what the jobs are. Spark's event log does: a job started by Delta Lake carries
Delta's description (``Compute snapshot for version: N``, the state of a table version rebuilt the first time
the session reads or writes it; ``Filtering files for query``, the files a filtered read keeps), a write's job
is named ``save``, a job started by a Python action names its line (``collect at jobs/...:N``), and the jobs
that adaptive query execution and broadcasts start on their own threads are named after a
``CompletableFuture``. This module reads such a log (uncompressed, as ``bench/night_calls.py --spark-jobs``
writes it) and, given each stage's start and end time, tells per stage how many jobs of each kind ran and how
long they took (a job's seconds are from its submission to its end; jobs of two threads can overlap).

    CPC_ENV=test .venv/bin/python bench/night_calls.py --spark-jobs      # writes the log and the table
    .venv/bin/python bench/spark_jobs.py var/bench/night_calls_eventlog     # any uncompressed event log, whole
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from tabulate import tabulate

KINDS = (
    "delta: table state rebuilt",
    "delta: files of a filtered read",
    "delta: other",
    "write (save)",
    "checkpoint",
    "adaptive or broadcast stage",
    "python action",
    "other",
)
OUTSIDE = "(outside the stages)"


def job_kind(description: str, stage_names: list[str], call_site: str) -> str:
    """The kind (one of ``KINDS``) of a job from its description, its stages' names and its call site."""
    names = " ".join(stage_names)
    if "Compute snapshot for version" in description:
        return KINDS[0]
    if "Filtering files for query" in description:
        return KINDS[1]
    if description.startswith("Delta:") or "recordDeltaOperation" in names or "DeltaTableOperations" in names:
        return KINDS[2]
    if any(n.startswith("save at") for n in stage_names):
        return KINDS[3]
    if "localCheckpoint" in names or "checkpoint at" in names:
        return KINDS[4]
    if "CompletableFuture" in names:
        return KINDS[5]
    if re.match(r"(collect|first|count|take|head|toPandas|toLocalIterator|showString) at ", call_site):
        return KINDS[6]
    return KINDS[7]


def jobs(lines: Iterable[str]) -> list[dict]:
    """The jobs of an event log's lines: id, kind, submission and completion (epoch milliseconds)."""
    out: dict[int, dict] = {}
    for line in lines:
        if "SparkListenerJob" not in line[:80]:  # the event's name comes first: skip the others unparsed
            continue
        event = json.loads(line)
        if event["Event"] == "SparkListenerJobStart":
            props = event.get("Properties") or {}
            out[event["Job ID"]] = {
                "id": event["Job ID"], "start": event["Submission Time"], "end": None,
                "kind": job_kind(props.get("spark.job.description") or "",
                                 [s.get("Stage Name", "") for s in event.get("Stage Infos", [])],
                                 props.get("callSite.short") or ""),
            }
        elif event["Event"] == "SparkListenerJobEnd" and event["Job ID"] in out:
            out[event["Job ID"]]["end"] = event["Completion Time"]
    return [out[k] for k in sorted(out)]


def log_lines(path: Path) -> Iterable[str]:
    """The lines of an uncompressed event log: one file, or every ``events_<n>_*`` file of a rolling log's
    directory in order (the newest ``eventlog_v2_*`` directory when ``path`` holds several)."""
    if path.is_file():
        files = [path]
    else:
        dirs = sorted((p for p in path.glob("eventlog_v2_*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
        folder = dirs[-1] if dirs else path
        files = sorted(folder.glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
        if not files:
            raise FileNotFoundError(f"{path}: no event log (events_<n>_<app> files)")
    for f in files:
        if f.suffix in (".zstd", ".lz4", ".snappy", ".lzf"):
            raise ValueError(f"{f}: a compressed event log; write it with spark.eventLog.compress=false")
        with f.open(encoding="utf-8") as fh:
            yield from fh


def by_stage(all_jobs: list[dict], windows: list[tuple[str, float, float]] | None = None) -> dict[str, dict]:
    """Per stage (``windows``: name, start and end in epoch seconds; a job belongs to the stage it was submitted
    in), per kind: jobs and seconds. Without windows, every job counts under ``all``; jobs outside every
    window under ``OUTSIDE``, and only when there are some."""
    table: dict[str, dict] = collections.defaultdict(lambda: {k: [0, 0.0] for k in KINDS})
    for job in all_jobs:
        stage = "all" if windows is None else next(
            (name for name, t0, t1 in windows if t0 * 1000 <= job["start"] <= t1 * 1000), OUTSIDE)
        cell = table[stage][job["kind"]]
        cell[0] += 1
        cell[1] += ((job["end"] or job["start"]) - job["start"]) / 1000
    order = [w[0] for w in windows] if windows else ["all"]
    return {s: {k: {"jobs": v[0], "seconds": round(v[1], 2)} for k, v in table[s].items()}
            for s in [*order, OUTSIDE] if s in table}


def total(stages: dict[str, dict]) -> dict[str, dict]:
    """The kinds added up over the stages (``OUTSIDE`` left out)."""
    out = {k: {"jobs": 0, "seconds": 0.0} for k in KINDS}
    for stage, kinds in stages.items():
        if stage == OUTSIDE:
            continue
        for k, v in kinds.items():
            out[k]["jobs"] += v["jobs"]
            out[k]["seconds"] = round(out[k]["seconds"] + v["seconds"], 2)
    return out


def markdown(stages: dict[str, dict]) -> str:
    """Jobs (and their seconds) per stage and kind, with the total over the stages."""
    rows = stages if list(stages) == ["all"] else {**stages, "total": total(stages)}
    head = ["stage", *KINDS, "all"]
    body = [[s, *[f"{v[k]['jobs']} ({v[k]['seconds']:.1f} s)" for k in KINDS],
             f"{sum(x['jobs'] for x in v.values())} ({sum(x['seconds'] for x in v.values()):.1f} s)"]
            for s, v in rows.items()]
    return tabulate(body, headers=head, tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path, help="an uncompressed Spark event log: a file, or a directory holding one")
    args = ap.parse_args(argv)
    print(markdown(by_stage(jobs(log_lines(args.log)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
