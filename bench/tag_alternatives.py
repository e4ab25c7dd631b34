"""The tag engine against the ways a tag factory is otherwise built, on the same lake and the same snapshot date.

- **engine**: the whole catalogue as one aggregation of the daily table and a few selects (``jobs.stages.tags``),
  written to Parquet;
- **per-tag queries**: one Spark job per tag, each computing only that tag (its dependencies and the window
  features it reads) and writing it to Parquet: how tag factories usually grow, one script per tag. Running
  300+ of them at a million customers takes hours, so a spread sample of the catalogue (every n-th tag) is
  timed and the mean is multiplied by the number of tags;
- **DuckDB**: the same catalogue over the same Delta files in DuckDB (``bench/duckdb_tags.py``), written to
  Parquet.

All three write the same columns (customer id, snapshot date, tags) so the comparison is like for like; the
nightly ``tags`` stage does more (Delta write, carry-forward, statistics, drift).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

from jobs.platform.config import Paths
from jobs.stages.tags import Catalogue, apply_tags, base_frame


def subcatalogue(cat: Catalogue, tag_id: str) -> Catalogue:
    """Only ``tag_id``, the tags it needs (transitively) and the window features they read."""
    by_id = {t.id: t for t in cat.tags}
    keep, todo = set(), [tag_id]
    while todo:
        tid = todo.pop()
        if tid in keep:
            continue
        keep.add(tid)
        todo.extend(r for r in by_id[tid].refs() if r in by_id)
    refs = set().union(*(by_id[t].refs() for t in keep))
    features = {name: f for name, f in cat.features.items() if name in refs}
    layers = [[t for t in layer if t.id in keep] for layer in cat.layers]
    return Catalogue(version=cat.version, windows=cat.windows, features=features,
                     tags=[t for t in cat.tags if t.id in keep], layers=[layer for layer in layers if layer])


def sample(cat: Catalogue, n: int) -> list[str]:
    """``n`` tags spread evenly over the catalogue (so every family is represented)."""
    step = max(1, len(cat.tags) // n)
    return [t.id for t in cat.tags[::step]][:n]


def _write(df, out: Path) -> None:
    df.write.mode("overwrite").parquet(str(out))


def engine(spark, paths: Paths, day: dt.date, cat: Catalogue, out: Path) -> float:
    t0 = time.time()
    _write(apply_tags(base_frame(spark, paths, day, cat), cat), out)
    spark.catalog.clearCache()
    return time.time() - t0


def per_tag(spark, paths: Paths, day: dt.date, cat: Catalogue, out: Path, tags: list[str]) -> dict[str, float]:
    """Seconds per tag, each its own query and its own output."""
    seconds = {}
    for i, tid in enumerate(tags, 1):
        sub = subcatalogue(cat, tid)
        t0 = time.time()
        _write(apply_tags(base_frame(spark, paths, day, sub), sub).select("customer_id", "snapshot_date", tid), out / tid)
        spark.catalog.clearCache()
        seconds[tid] = time.time() - t0
        print(f"per-tag query {i}/{len(tags)} {tid}: {seconds[tid]:.1f}s", flush=True)
    return seconds


def same_result(cat: Catalogue, duck: Path, engine_out: Path) -> dict:
    """The DuckDB output against the Spark engine's, tag by tag (``duckdb_tags.diff``): the same logic must
    give the same values, or the timing compares different work."""
    from bench import duckdb_tags

    con = duckdb_tags.capped(duck.parent / "duckdb_spill")
    try:
        con.execute(f"CREATE VIEW duck AS SELECT * FROM read_parquet('{duck}')")
        con.execute(f"CREATE VIEW spark AS SELECT * FROM read_parquet('{engine_out}/*.parquet')")
        return duckdb_tags.diff(con, cat, "duck", "spark")
    finally:
        con.close()


def compare(spark, paths: Paths, day: dt.date, cat: Catalogue, work: Path, per_tag_sample: int,
            duckdb_threads: int | None = None) -> dict:
    """Time the three ways on ``day``; ratio 1 = per-tag total / engine (no per-tag query when
    ``per_tag_sample`` is 0), ratio 2 = engine / DuckDB."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t_engine = engine(spark, paths, day, cat, work / "engine")
    print(f"tag engine: {len(cat.tags)} tags in {t_engine:.1f}s", flush=True)
    result = {"tags": len(cat.tags), "engine_seconds": round(t_engine, 1)}
    if per_tag_sample:  # 0: the engine and DuckDB only
        each = per_tag(spark, paths, day, cat, work / "per_tag", sample(cat, per_tag_sample))
        mean = sum(each.values()) / len(each)
        result.update({
            "per_tag_sampled": len(each),
            "per_tag_mean_seconds": round(mean, 2),
            "per_tag_seconds": {k: round(v, 2) for k, v in each.items()},
            "per_tag_total_seconds_estimated": round(mean * len(cat.tags), 1),
            "ratio_per_tag_to_engine": round(mean * len(cat.tags) / t_engine, 1),
        })
    try:
        from bench import duckdb_tags
    except ImportError as exc:  # duckdb is in the dev extra; say so rather than fail the whole benchmark
        result["duckdb_error"] = f"DuckDB comparison skipped: {exc}"
        print(result["duckdb_error"], flush=True)
    else:
        t_duck = duckdb_tags.to_parquet(paths.root, day, work / "duckdb.parquet", cat=cat, threads=duckdb_threads)
        print(f"DuckDB: {len(cat.tags)} tags in {t_duck:.1f}s", flush=True)
        result.update({"duckdb_seconds": round(t_duck, 1), "ratio_spark_to_duckdb": round(t_engine / t_duck, 2),
                       "duckdb_against_engine": same_result(cat, work / "duckdb.parquet", work / "engine")})
        d = result["duckdb_against_engine"]
        print(f"DuckDB against the engine: {d['matched']:,} customers on both sides, {d['only_duckdb']} only in DuckDB, "
              f"{d['only_spark']} only in Spark, {len(d['differing'])} tag(s) differ {d['differing'] or ''}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return result
