"""Configuration: where things run (`conf/env/<CPC_ENV>.yaml`) and what the business may change (`conf/*.yaml`).

One environment variable, ``CPC_ENV`` (default ``local``), picks the environment file; ``CPC_ROOT`` overrides
its storage root.  Code never reads the clock: every job is given its run date.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobs.platform.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_DIR / "conf"




def load_yaml(path: Path) -> Any:
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found")
    with path.open(encoding="utf-8") as fh:
        try:
            return yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


@functools.cache
def business(name: str) -> Any:
    """A business configuration file under conf/, e.g. ``business("products")``."""
    return load_yaml(CONF_DIR / f"{name}.yaml")


@dataclass(frozen=True)
class Paths:
    """Every location the pipeline reads or writes, derived from one storage root."""

    root: Path

    @property
    def landing(self) -> Path:
        """Where the operator's systems drop each day's files (one folder per delivery date)."""
        return self.root / "landing"

    @property
    def archive(self) -> Path:
        """Raw files exactly as received, kept after ingest whatever the outcome."""
        return self.root / "archive"

    @property
    def truth(self) -> Path:
        """The simulator's hidden ground truth. The pipeline never reads it; tests and benchmarks may."""
        return self.root / "truth"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def table(self, name: str) -> str:
        """Storage path of a Delta table named ``layer.table``."""
        layer, _, table = name.partition(".")
        if not table:
            raise ConfigError(f"table name {name!r} must be 'layer.table'")
        return str(self.lake / layer / table)

    def landing_day(self, day: dt.date) -> Path:
        return self.landing / day.isoformat()

    def archive_day(self, day: dt.date) -> Path:
        return self.archive / day.isoformat()

    def export_day(self, day: dt.date) -> Path:
        return self.exports / day.isoformat()


@dataclass(frozen=True)
class Settings:
    env: str
    spark_master: str
    shuffle_partitions: int
    spark_conf: dict[str, str] = field(default_factory=dict)
    paths: Paths = field(default_factory=lambda: Paths(PROJECT_DIR / "var"))
    sample: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_end_date(self) -> dt.date:
        return parse_date(str(self.sample["end_date"]))


def parse_date(text: str | dt.date) -> dt.date:
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(str(text)[:10])
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a date (expected YYYY-MM-DD)") from exc


def settings(env: str | None = None) -> Settings:
    """Settings of the environment named by ``env`` or ``CPC_ENV`` (default ``local``)."""
    env = env or os.environ.get("CPC_ENV", "local")
    path = CONF_DIR / "env" / f"{env}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONF_DIR / "env").glob("*.yaml"))
        raise ConfigError(f"CPC_ENV={env!r}: no {path}; known environments: {', '.join(known)}")
    raw = load_yaml(path) or {}
    spark = raw.get("spark", {})
    root = Path(os.environ.get("CPC_ROOT") or raw.get("storage", {}).get("root", "var"))
    if not root.is_absolute():
        root = PROJECT_DIR / root
    master = os.environ.get("CPC_SPARK_MASTER") or spark.get("master", "local[2]")
    conf = {str(k): str(v) for k, v in (spark.get("conf") or {}).items()}
    if os.environ.get("CPC_SPARK_CONF_JSON"):  # one-off Spark settings without editing conf/, e.g. for a rerun
        try:
            conf.update({str(k): str(v) for k, v in json.loads(os.environ["CPC_SPARK_CONF_JSON"]).items()})
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"CPC_SPARK_CONF_JSON is not a JSON object of Spark settings: {exc}") from exc
    return Settings(
        env=env,
        spark_master=master,
        shuffle_partitions=int(spark.get("shuffle_partitions", 8)),
        spark_conf=conf,
        paths=Paths(root),
        sample=dict(raw.get("sample") or {}),
    )
