"""A class-data archive for the local Spark driver: the JVM maps Spark's classes from one file instead of loading
and verifying them one by one, so a local session starts sooner.

Measured on the 2-core machine of docs/benchmarks.md (``CPC_ENV=test``): a session 7.7 s -> 4.6 s, its first
action 3.2 s -> 1.6 s. A local run pays that start once per process: each test session, each ``airflow dags test``,
each CLI command. Java's Class Data Sharing (JEP 350, dynamic archives, JDK 13+) does the work: a JVM started with
``-XX:ArchiveClassesAtExit`` writes the classes it loaded when it exits; one started with ``-XX:SharedArchiveFile``
maps them. The archive changes no result: the classes are the same bytes, mapped instead of parsed.

``python -m jobs.platform.jvm archive`` (run by ``make setup``, so by ``make test`` and the benchmarks; not by ``make
run``, whose one JVM would save about 3 s of the archive's 41 s: ``bench/jvm_start.py``) builds it once into
``.cache/cds``, named by a key of the installed PySpark and the Java that will run it, with a small Delta workload
(write, merge, read, window, join) so that the classes a nightly stage uses are in it. Delta's own classes come
through Spark's class loader and are not archived (dynamic archives take the JDK's loaders only).

An environment opts in with ``spark.class_archive: true`` (conf/env/local.yaml, test.yaml); only a local master
uses it (a cluster's driver starts elsewhere). A missing or stale archive is no error: the JVM starts as before
(``-Xshare:auto``, the default), and ``make setup`` builds the archive for the new key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from jobs.platform.jars import jars_dir

log = logging.getLogger(__name__)

QUIET = "-Xlog:cds=off,cds+dynamic=off"  # the JVM lists each class it cannot archive (generated ones): noise


def java_executable() -> Path | None:
    """The ``java`` Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the first on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else (Path(w) if (w := shutil.which("java")) else None)
    return found.resolve() if found and found.exists() else None


def archive_path() -> Path | None:
    """Where the archive for the installed PySpark and this Java lives (None without a Java)."""
    import pyspark

    java = java_executable()
    if java is None:
        return None
    stat = java.stat()
    key = hashlib.sha256(f"{pyspark.__version__}|{java}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return jars_dir().parent / "cds" / f"spark-{pyspark.__version__}-{key}.jsa"


def driver_options(master: str, enabled: bool) -> list[str]:
    """The driver's JVM options that map the archive, when the environment asks for it, runs Spark locally and the
    archive exists; else none."""
    if not enabled or not master.startswith("local"):
        return []
    path = archive_path()
    if path is None or not path.exists():
        log.debug(f"no class-data archive at {path}: the JVM loads its classes one by one (`make setup` builds it)")
        return []
    return [f"-XX:SharedArchiveFile={path}", QUIET]


def build() -> Path | None:
    """Build the archive for the installed PySpark and Java unless it exists; its path, or None without a Java."""
    path = archive_path()
    if path is None:
        log.warning("class-data archive: no java found (JAVA_HOME, PATH); sessions start without one")
        return None
    if path.exists():
        log.info(f"class-data archive: {path} (already built)")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.part")
    log.info(f"class-data archive: building {path.name} (a Spark session and a small Delta workload, once)")
    subprocess.run([sys.executable, "-m", "jobs.platform.spark", "write-class-archive", str(tmp)], check=True)
    if not tmp.exists():
        log.warning(f"class-data archive: the JVM wrote no {tmp}; sessions start without one")
        return None
    tmp.replace(path)
    for old in path.parent.glob("spark-*.jsa"):  # archives of an earlier PySpark or Java
        if old != path:
            old.unlink()
    log.info(f"class-data archive: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    return path


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if sys.argv[1:] == ["archive"]:
        build()
    else:
        raise SystemExit("usage: python -m jobs.platform.jvm archive")
