"""Configuration: where things run (`conf/env/<CPC_ENV>.yaml`) and what the business may change (`conf/*.yaml`).

One environment variable, ``CPC_ENV`` (default ``local``), picks the environment file; ``CPC_ROOT`` overrides
its storage root.  Every job is given its run date; results depend on it, not on the clock.

Every configuration file is read into typed pydantic models (:func:`load_validated`, :func:`validate`): a
wrong type, a missing field or an unknown key is a :class:`ConfigError` with one line per problem naming the
file, the entry and the field, e.g.
``conf/products.yaml: products[3] (id 'P_SMS_200'): price: Input should be a valid number, unable to parse
string as a number``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from jobs.platform.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_DIR / "conf"

M = TypeVar("M")
# Keys that name a list entry in error messages, in order of preference: products[3] (id 'P_SMS_200').
ENTRY_KEYS = ("id", "name", "stage", "tier")


class ConfModel(BaseModel):
    """A mapping of a configuration file: unknown keys are refused (a misspelt setting is an error, not a
    setting silently ignored), and the values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_text(value: Any) -> Any:
    """A YAML scalar where text is meant: ``true``, ``0.9`` and ``30`` arrive as the text that was written
    (an SQL expression ``affinity: 0.9``, a Spark setting ``spark.ui.enabled: false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# Text that YAML may have read as a number or a boolean (SQL expressions, Spark settings, salts).
Text = Annotated[str, BeforeValidator(_as_text)]


def relative(path: Path | str) -> str:
    """``path`` relative to the project (``conf/products.yaml``) when it is inside it, else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(PROJECT_DIR))
    except ValueError:
        return str(p)


def entry_key(node: Any) -> str | None:
    """The key that names a mapping in error messages (the first of :data:`ENTRY_KEYS` it has), else None."""
    if isinstance(node, dict):
        for key in ENTRY_KEYS:
            if isinstance(node.get(key), str | int) and not isinstance(node.get(key), bool):
                return key
    return None


def _path(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _where(loc: tuple[str | int, ...], data: Any, what: str | None) -> str:
    """``products[3] (id 'P_SMS_200'): price`` from pydantic's location of an error in ``data``: the
    innermost entry on the way that has an id (or name, stage, tier), then the field below it. Steps that are
    not keys of the file (the member of a union a value was tried as) are left out."""
    node, parts, entry = data, [], None
    for i, key in enumerate(loc):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        elif i == len(loc) - 1 and isinstance(node, dict):
            node = None  # a missing key
        else:
            continue
        parts.append(key)
        if entry_key(node):
            entry = (len(parts), f" ({entry_key(node)} {node[entry_key(node)]!r})")
        elif isinstance(key, int) and isinstance(node, dict):
            entry = (len(parts), "")  # an entry without a name: products[2]
    if entry is not None:
        head, field_path = f"{_path(parts[: entry[0]])}{entry[1]}", _path(parts[entry[0]:]).lstrip(".")
    else:
        head = f"{what} {data[entry_key(data)]}" if what and entry_key(data) else ""
        field_path = _path(parts)
    return ": ".join(p for p in (head, field_path) if p)


def _message(err: dict[str, Any]) -> str:
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "extra_forbidden" and err.get("input") is None:
        msg += " (a key without a value: an unquoted comma in a {...} mapping cuts a text into keys; quote the text)"
    return msg


def describe(exc: ValidationError, data: Any, source: str, what: str | None = None) -> str:
    """One line per problem: ``<file>: <entry>: <field>: <pydantic's message>``."""
    lines = []
    for err in exc.errors(include_url=False):
        where = _where(tuple(err["loc"]), data, what)
        lines.append(f"{source}: {where + ': ' if where else ''}{_message(err)}")
    return "\n".join(lines)


def validate(model: type[M] | TypeAdapter[M], data: Any, source: str | Path, *, what: str | None = None,
             error: type[ConfigError] = ConfigError) -> M:
    """``data`` (read from ``source``) as a ``model``; a problem raises ``error`` (a :class:`ConfigError`)
    naming ``source`` (a path is shown relative to the project), the entry and the field. ``what`` names a
    file that is one entry, e.g. ``what="campaign"`` gives ``conf/campaigns/x.yaml: campaign x: holdout: ...``."""
    src = relative(source) if isinstance(source, Path) else source
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data)
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise error(describe(exc, data, src, what)) from exc


def load_validated(path: Path, model: type[M], *, what: str | None = None, error: type[ConfigError] = ConfigError) -> M:
    """A YAML file read (:func:`load_yaml`) and validated as ``model`` (:func:`validate`); an empty file is
    an empty mapping."""
    raw = load_yaml(path)
    return validate(model, {} if raw is None else raw, path, what=what, error=error)


# libyaml's parser where PyYAML was built with it: the same safe loading, ten times faster (the tag catalogue
# is read on every load_catalogue()).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> Any:
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found")
    with path.open(encoding="utf-8") as fh:
        try:
            return yaml.load(fh, Loader=_LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


@functools.cache
def business(name: str) -> Any:
    """A business configuration file under conf/ as raw YAML, e.g. ``business("products")``. Unchecked: prefer
    the typed loaders (``jobs.platform.business``, and each stage's own) that validate the file."""
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


class SparkEnv(ConfModel):
    master: str = "local[2]"  # a Spark master URL, or "submit": left to spark-submit
    shuffle_partitions: int = Field(8, ge=1)
    conf: dict[str, Text] = Field(default_factory=dict)
    class_archive: bool = False  # a local driver maps Spark's classes from .cache/cds (jobs/platform/jvm.py)


class StorageEnv(ConfModel):
    root: str = "var"  # relative paths are taken from the project folder
    # A history load (`cpc history`, make run's first step) ingests and conforms its dates in batches whose landing
    # files add up to at most this many MB: one batch parses and caches a kind's files of every date in it, and at
    # 1,000,000 customers 88 dates of usage in one batch filled 56 GB of Spark's scratch disk (docs/operations.md).
    history_batch_mb: float = Field(512, gt=0)


class SampleEnv(ConfModel):
    """The simulated operator `make sample` generates for this environment."""

    customers: int = Field(ge=1)
    days: int = Field(ge=1)
    end_date: dt.date
    seed: int
    profile: str = "realistic"  # the simulated operator's behaviour (simulator/profiles.py: easy, realistic, hard)
    # make run's warm-up (simulator/warmup.py, from python -m simulator sample-run): nightly runs of this many
    # days before end_date, each answered by the simulated campaign platform, so that the first campaign report has
    # outcomes; 0: none
    warmup_days: int = Field(0, ge=0)


# How the nightly DAG runs the night's stages (jobs/airflow_glue/defaults.py, wire_nightly): ``per_stage``, one
# Airflow task per stage (a scheduler runs each in its own process, with its own Spark JVM and its warm-up), or
# ``one``, one task ``nightly`` running every stage in one process (one JVM warm-up a night; a retry reruns the night).
NightlyTasks = Literal["per_stage", "one"]
NIGHTLY_TASKS_ENV = "CPC_NIGHTLY_TASKS"  # overrides ``airflow.nightly_tasks`` of the environment file


class AirflowEnv(ConfModel):
    """How the DAGs are wired. Read when a DAG file is parsed: the DAG processor must see the same environment
    (``CPC_ENV``, ``CPC_NIGHTLY_TASKS``) as the workers."""

    nightly_tasks: NightlyTasks = "per_stage"


class EnvFile(ConfModel):
    """``conf/env/<CPC_ENV>.yaml``."""

    spark: SparkEnv = Field(default_factory=SparkEnv)
    storage: StorageEnv = Field(default_factory=StorageEnv)
    sample: SampleEnv | None = None
    airflow: AirflowEnv = Field(default_factory=AirflowEnv)


@dataclass(frozen=True)
class Settings:
    env: str
    spark_master: str
    shuffle_partitions: int
    spark_conf: dict[str, str] = field(default_factory=dict)
    class_archive: bool = False
    paths: Paths = field(default_factory=lambda: Paths(PROJECT_DIR / "var"))
    sample: dict[str, Any] = field(default_factory=dict)
    nightly_tasks: str = "per_stage"  # NightlyTasks: per_stage or one
    history_batch_mb: float = 512  # StorageEnv.history_batch_mb

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


def nightly_tasks(env_file: EnvFile) -> str:
    """``airflow.nightly_tasks`` of the environment file, or ``CPC_NIGHTLY_TASKS`` when set; a value that is not
    one of :data:`NightlyTasks` is a :class:`ConfigError` naming the variable (the file's is checked with it)."""
    value = os.environ.get(NIGHTLY_TASKS_ENV)
    if not value:
        return env_file.airflow.nightly_tasks
    return validate(TypeAdapter(NightlyTasks), value, f"{NIGHTLY_TASKS_ENV}={value!r}")


def settings(env: str | None = None) -> Settings:
    """Settings of the environment named by ``env`` or ``CPC_ENV`` (default ``local``)."""
    env = env or os.environ.get("CPC_ENV", "local")
    path = CONF_DIR / "env" / f"{env}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONF_DIR / "env").glob("*.yaml"))
        raise ConfigError(f"CPC_ENV={env!r}: no {path}; known environments: {', '.join(known)}")
    env_file = load_validated(path, EnvFile)
    spark = env_file.spark
    root = Path(os.environ.get("CPC_ROOT") or env_file.storage.root)
    if not root.is_absolute():
        root = PROJECT_DIR / root
    master = os.environ.get("CPC_SPARK_MASTER") or spark.master
    conf = dict(spark.conf)
    if os.environ.get("CPC_SPARK_CONF_JSON"):  # one-off Spark settings without editing conf/, e.g. for a rerun
        try:
            conf.update({str(k): str(v) for k, v in json.loads(os.environ["CPC_SPARK_CONF_JSON"]).items()})
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"CPC_SPARK_CONF_JSON is not a JSON object of Spark settings: {exc}") from exc
    return Settings(
        env=env,
        spark_master=master,
        shuffle_partitions=spark.shuffle_partitions,
        spark_conf=conf,
        class_archive=spark.class_archive,
        paths=Paths(root),
        sample=env_file.sample.model_dump(mode="json") if env_file.sample else {},
        nightly_tasks=nightly_tasks(env_file),
        history_batch_mb=env_file.storage.history_batch_mb,
    )
