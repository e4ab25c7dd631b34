"""Delta Lake's jars: fetched once from Maven Central into a cache the project owns, then loaded from there.

``python -m jobs.platform.jars fetch`` downloads ``delta-spark_<spark major.minor>_2.13`` and ``delta-storage`` at the
version of the installed ``delta-spark`` Python package, checks each against Maven's published SHA-1, and
writes them to ``.cache/jars`` (``CPC_JARS_DIR`` overrides).  Spark sessions then use ``spark.jars`` with
these files, so no run after setup touches the network.  Only these two jars are taken: Delta's other
dependencies (kernel, Unity Catalog client) are not needed by Delta on Spark and would shadow Spark's own
Jackson and Hadoop classes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import urllib.request
from importlib import metadata
from pathlib import Path

from jobs.platform.config import PROJECT_DIR
from jobs.platform.errors import JarsMissing

log = logging.getLogger(__name__)

MAVEN = os.environ.get("CPC_MAVEN_REPO", "https://repo1.maven.org/maven2")
SCALA = "2.13"




def jars_dir() -> Path:
    return Path(os.environ.get("CPC_JARS_DIR", PROJECT_DIR / ".cache" / "jars"))


def artifacts() -> list[tuple[str, str, str]]:
    """(group, artifact, version) of the jars Delta on Spark needs, matching the installed packages."""
    import pyspark

    delta_version = metadata.version("delta-spark")
    spark_mm = ".".join(pyspark.__version__.split(".")[:2])
    return [
        ("io.delta", f"delta-spark_{spark_mm}_{SCALA}", delta_version),
        ("io.delta", "delta-storage", delta_version),
    ]


def jar_paths() -> list[Path]:
    return [jars_dir() / f"{a}-{v}.jar" for _, a, v in artifacts()]


def local_jars() -> list[str]:
    """The cached jar files; a clear error when setup has not fetched them."""
    paths = jar_paths()
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise JarsMissing(
            f"Delta jars not in {jars_dir()}: {', '.join(missing)}. Run `make setup` (or `python -m jobs.platform.jars fetch`)."
        )
    return [str(p) for p in paths]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as resp:  # noqa: S310 - fixed https URL of Maven Central
        return resp.read()


def fetch() -> list[Path]:
    target = jars_dir()
    target.mkdir(parents=True, exist_ok=True)
    done = []
    for group, artifact, version in artifacts():
        path = target / f"{artifact}-{version}.jar"
        if path.exists():
            log.info(f"jars: {path.name} already cached")
            done.append(path)
            continue
        base = f"{MAVEN}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"
        log.info(f"jars: fetching {base}")
        try:
            data = _get(base)
            expected = _get(base + ".sha1").decode().split()[0].strip()
        except OSError as exc:
            raise SystemExit(f"jars: cannot fetch {base}: {exc}") from exc
        actual = hashlib.sha1(data).hexdigest()  # noqa: S324 - Maven publishes SHA-1 checksums
        if actual != expected:
            raise SystemExit(f"jars: {base}: SHA-1 {actual} does not match Maven's {expected}")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        done.append(path)
    return done


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        raise SystemExit("usage: python -m jobs.platform.jars fetch")
    for p in fetch():
        log.info(f"jars: {p}")
