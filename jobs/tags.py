"""The tag engine: the catalogue in ``conf/tags.yaml`` -> ``gold.customer_tags`` for one snapshot date.

The whole catalogue is computed in three kinds of pass, whatever its size:
1. one aggregation over ``silver.customer_day`` for every window feature (conditional sums over the
   longest window, so a 7-day and a 30-day sum come from the same scan);
2. as-of state (profile, open complaints, device, holdings, opt-outs) from bronze, each a small scan;
3. one ``select`` per dependency layer of tags (tags that use other tags come in a later layer).

Point in time: everything for snapshot date D reads only rows dated up to D.
The catalogue is checked when loaded: duplicate ids, unknown families or types, unknown columns or
functions, and circular references each fail with an error naming the tag.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs import lake
from jobs.config import CONF_DIR, Paths, load_yaml
from jobs.conform import MEASURE_NAMES

FAMILIES = {"social", "value", "service", "marketing", "contact", "lifecycle", "tier", "model"}
TYPES = {"boolean", "int", "bigint", "double", "string", "date"}

# Columns the engine provides to tag expressions besides window features and other tags.
PROFILE_COLUMNS = {
    "gender": "string", "birth_year": "int", "city": "string", "district": "string", "occupation": "string",
    "activation_date": "date", "brand": "string", "plan_id": "string", "monthly_fee": "double",
    "contract_end_date": "date", "credit_level": "int", "vip_level": "int", "has_wechat": "boolean",
    "email": "string", "status": "string",
}
STATE_COLUMNS = {
    "snapshot_date": "date", "open_complaints": "int", "device_brand": "string", "device_gen": "int",
    "device_price": "double", "device_is_smart": "boolean", "device_since": "date", "device_changes_365d": "int",
    "held_products": "array<string>", "held_vas": "int", "optouts": "array<string>", "balance": "double",
}

# Functions a tag expression may call. Anything else (reflect, java_method, UDFs...) is refused.
ALLOWED_FUNCTIONS = {
    "abs", "array", "array_contains", "array_join", "split", "array_sort", "ceil", "coalesce", "concat", "datediff", "date_add",
    "date_sub", "element_at", "exp", "floor", "greatest", "if", "isnull", "isnotnull", "least", "length", "ln",
    "log", "lower", "months_between", "nullif", "nvl", "pow", "power", "round", "size", "sqrt", "struct",
    "substr", "substring", "trim", "upper", "year", "month", "dayofweek", "cast", "sign", "in",
}
SQL_WORDS = {
    "and", "or", "not", "case", "when", "then", "else", "end", "null", "true", "false", "is", "in", "between",
    "like", "as", "int", "bigint", "double", "string", "boolean", "date", "interval", "day", "days", "distinct",
}


class CatalogueError(ValueError):
    """The tag catalogue cannot be used; the message names the tag."""


@dataclass(frozen=True)
class Tag:
    id: str
    family: str
    type: str
    expr: str
    name_en: str
    name_zh: str
    description: str
    owner: str
    version: int
    default: str | None = None
    grain: str = "customer/day"

    def refs(self) -> set[str]:
        return identifiers(self.expr)[0]


@dataclass
class Catalogue:
    version: int
    windows: dict[str, tuple[int, int]]
    features: dict[str, tuple[str, str, str]]  # name -> (kind, measure, window)
    tags: list[Tag]
    source: Path | None = None
    layers: list[list[Tag]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.tags]

    def base_columns(self) -> dict[str, str]:
        cols = dict(PROFILE_COLUMNS)
        cols.update(STATE_COLUMNS)
        cols.update({f: ("int" if k == "days_with" or k == "days_since" else "double") for f, (k, _, _) in self.features.items()})
        return cols


_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_IDENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(\s*\()?")


def identifiers(expr: str) -> tuple[set[str], set[str]]:
    """(column names, function names) used by a SQL expression; string literals and keywords are skipped,
    as are struct field accesses (``.c``)."""
    text = _STRING.sub("''", expr)
    cols, funcs = set(), set()
    for m in _IDENT.finditer(text):
        word = m.group(1)
        if m.start() > 0 and text[m.start() - 1] == ".":
            continue
        if word[0].isdigit() or word.lower() in SQL_WORDS:
            continue
        if m.group(2):
            funcs.add(word.lower())
        else:
            cols.add(word)
    # "x as c" inside struct(...): the alias is not a column reference
    for alias in re.findall(r"\bas\s+([A-Za-z_][A-Za-z0-9_]*)", text, flags=re.IGNORECASE):
        if alias.lower() not in SQL_WORDS:
            cols.discard(alias)
    return cols, funcs


def _features(raw: dict[str, Any], windows: dict[str, tuple[int, int]]) -> dict[str, tuple[str, str, str]]:
    out: dict[str, tuple[str, str, str]] = {}
    for kind, spec in (raw or {}).items():
        for m in spec.get("measures", []):
            if m not in MEASURE_NAMES:
                raise CatalogueError(f"features.{kind}: unknown daily measure {m!r} (known: see jobs/conform.py)")
            if kind == "days_since":
                out[f"days_since_{m}"] = (kind, m, max(windows, key=lambda w: windows[w][1]))
                continue
            for w in spec.get("windows", []):
                if w not in windows:
                    raise CatalogueError(f"features.{kind}: unknown window {w!r}")
                name = f"{m}_{w}" if kind == "sum" else f"days_with_{m}_{w}"
                if kind not in ("sum", "days_with"):
                    raise CatalogueError(f"features: unknown feature kind {kind!r}")
                out[name] = (kind, m, w)
    return out


def load_catalogue(path: Path | None = None, extra_tags: list[dict] | None = None) -> Catalogue:
    """Load and check the catalogue. ``extra_tags`` lets tests add entries without a file."""
    path = path or CONF_DIR / "tags.yaml"
    raw = load_yaml(path) if path.exists() or extra_tags is None else {}
    windows = {k: (int(v[0]), int(v[1])) for k, v in (raw.get("windows") or {}).items()}
    for name, (a, b) in windows.items():
        if not 0 <= a <= b:
            raise CatalogueError(f"window {name}: [from, to] must satisfy 0 <= from <= to")
    features = _features(raw.get("features") or {}, windows)
    owner = raw.get("owner", "unknown")
    version = int(raw.get("version", 1))
    tags: list[Tag] = []
    seen: set[str] = set()
    for entry in list(raw.get("tags") or []) + list(extra_tags or []):
        tid = entry.get("id")
        if not tid or not re.fullmatch(r"[a-z][a-z0-9_]*", str(tid)):
            raise CatalogueError(f"tag {tid!r}: id must be lower_snake_case")
        missing = [k for k in ("family", "type", "expr", "name_en", "name_zh", "description") if not entry.get(k)]
        if missing:
            raise CatalogueError(f"tag {tid}: missing {', '.join(missing)}")
        if tid in seen:
            raise CatalogueError(f"tag {tid}: duplicate id")
        seen.add(tid)
        if entry["family"] not in FAMILIES:
            raise CatalogueError(f"tag {tid}: unknown family {entry['family']!r} (one of {sorted(FAMILIES)})")
        if entry["type"] not in TYPES:
            raise CatalogueError(f"tag {tid}: unknown type {entry['type']!r} (one of {sorted(TYPES)})")
        tags.append(Tag(
            id=tid, family=entry["family"], type=entry["type"], expr=str(entry["expr"]),
            name_en=entry["name_en"], name_zh=entry["name_zh"], description=entry["description"],
            owner=entry.get("owner", owner), version=int(entry.get("version", version)),
            default=None if entry.get("default") is None else str(entry["default"]).lower(),
        ))
    cat = Catalogue(version=version, windows=windows, features=features, tags=tags, source=path)
    check(cat)
    return cat


def check(cat: Catalogue) -> None:
    """Unknown columns and functions, then cycles; fills ``cat.layers`` in dependency order."""
    base = cat.base_columns()
    ids = set(cat.ids)
    clash = ids & set(base)
    if clash:
        raise CatalogueError(f"tag {sorted(clash)[0]}: id clashes with a base column of the same name")
    deps: dict[str, set[str]] = {}
    for t in cat.tags:
        cols, funcs = identifiers(t.expr)
        bad_funcs = sorted(funcs - ALLOWED_FUNCTIONS)
        if bad_funcs:
            raise CatalogueError(f"tag {t.id}: function(s) not allowed in tag expressions: {', '.join(bad_funcs)}")
        unknown = sorted(cols - ids - set(base))
        if unknown:
            raise CatalogueError(f"tag {t.id}: unknown column(s) or tag(s): {', '.join(unknown)}")
        deps[t.id] = cols & ids
    layers: list[list[Tag]] = []
    done: set[str] = set()
    pending = {t.id: t for t in cat.tags}
    while pending:
        ready = [t for tid, t in pending.items() if deps[tid] <= done]
        if not ready:
            cycle = _find_cycle({k: deps[k] & set(pending) for k in pending})
            raise CatalogueError(f"tag {cycle[0]}: circular reference {' -> '.join(cycle)}")
        layers.append(ready)
        for t in ready:
            done.add(t.id)
            pending.pop(t.id)
    cat.layers = layers


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    for start in sorted(graph):
        path, node = [start], start
        seen = {start}
        while graph.get(node):
            node = sorted(graph[node])[0]
            path.append(node)
            if node in seen:
                return path[path.index(node):]
            seen.add(node)
    return sorted(graph)


# ---------------------------------------------------------------------------------------------------------
# Inputs as of the snapshot date
# ---------------------------------------------------------------------------------------------------------
def profile_asof(spark, paths: Paths, day: dt.date):
    """The latest CRM record of every customer as of ``day`` (closed lines included; callers filter)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    crm = lake.read(spark, paths, "bronze.crm_profile").where(F.col("delivery_date") <= F.lit(day))
    w = Window.partitionBy("customer_id").orderBy(F.col("record_date").desc(), F.col("delivery_date").desc())
    return crm.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn", "delivery_date", "_source_file", "record_date")


def window_features(daily, day: dt.date, cat: Catalogue):
    """Pure transform: silver.customer_day rows -> one row per customer with every window feature of the
    catalogue, in one aggregation. Rows after ``day`` (or older than the longest window) are ignored."""
    from pyspark.sql import functions as F

    longest = max(b for _, b in cat.windows.values())
    daily = daily.where(
        (F.col("day") <= F.lit(day)) & (F.col("day") >= F.lit(day - dt.timedelta(days=longest)))
    ).withColumn("_ago", F.datediff(F.lit(day), F.col("day")))
    aggs = []
    for name, (kind, measure, window) in cat.features.items():
        a, b = cat.windows[window]
        inside = F.col("_ago").between(a, b)
        if kind == "sum":
            aggs.append(F.sum(F.when(inside, F.col(measure)).otherwise(0)).cast("double").alias(name))
        elif kind == "days_with":
            aggs.append(F.sum(F.when(inside & (F.col(measure) > 0), 1).otherwise(0)).cast("int").alias(name))
        else:  # days_since
            aggs.append(F.min(F.when(F.col(measure) > 0, F.col("_ago"))).cast("int").alias(name))
    aggs.append(F.max_by("balance", "day").cast("double").alias("balance"))
    return daily.groupBy("customer_id").agg(*aggs)


def state_asof(spark, paths: Paths, day: dt.date):
    """Open complaints, current device, products held and opt-outs as of ``day``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    upto = F.col("delivery_date") <= F.lit(day)
    complaints = (
        lake.read(spark, paths, "bronze.complaints").where(upto)
        .groupBy("customer_id", "complaint_id")
        .agg(F.max(F.when(F.col("event") == "closed", 1).otherwise(0)).alias("closed"))
        .groupBy("customer_id").agg(F.sum(1 - F.col("closed")).cast("int").alias("open_complaints"))
    )
    dev = lake.read(spark, paths, "bronze.devices").where(upto)
    devices = dev.groupBy("customer_id").agg(
        F.max_by("brand", "change_date").alias("device_brand"),
        F.max_by("network_gen", "change_date").alias("device_gen"),
        F.max_by("price", "change_date").alias("device_price"),
        F.max_by("is_smartphone", "change_date").alias("device_is_smart"),
        F.max("change_date").alias("device_since"),
        F.sum(F.when(F.col("change_date") > F.lit(day - dt.timedelta(days=365)), 1).otherwise(0)).cast("int").alias("device_changes_365d"),
    )
    w = Window.partitionBy("customer_id", "product_id").orderBy(F.col("order_ts").desc(), F.col("order_id").desc())
    orders = lake.read(spark, paths, "bronze.orders").where(upto)
    holdings = (
        orders.withColumn("_rn", F.row_number().over(w)).where("_rn = 1")
        .where(F.col("action").isin("order", "trial_start", "trial_convert"))
        .groupBy("customer_id")
        .agg(
            F.array_sort(F.collect_list("product_id")).alias("held_products"),
            F.sum(F.col("product_id").isin("P_NEWS", "P_MUSIC", "P_READING", "P_GAMES", "P_RINGBACK").cast("int")).cast("int").alias("held_vas"),
        )
    )
    wo = Window.partitionBy("customer_id", "channel").orderBy(F.col("event_ts").desc())
    optouts = (
        lake.read(spark, paths, "bronze.optouts").where(upto)
        .withColumn("_rn", F.row_number().over(wo)).where("_rn = 1").where(F.col("action") == "opt_out")
        .groupBy("customer_id").agg(F.array_sort(F.collect_list("channel")).alias("optouts"))
    )
    return complaints, devices, holdings, optouts


def base_frame(spark, paths: Paths, day: dt.date, cat: Catalogue):
    """Every column a tag may use, one row per customer open on ``day``."""
    from pyspark.sql import functions as F

    profile = profile_asof(spark, paths, day).where(F.col("status") != "closed").where(F.col("activation_date") <= F.lit(day))
    feats = window_features(lake.read(spark, paths, "silver.customer_day"), day, cat)
    df = profile.join(feats, on="customer_id", how="left")
    for part in state_asof(spark, paths, day):
        df = df.join(part, on="customer_id", how="left")
    fills = {name: 0 for name, (kind, _, _) in cat.features.items() if kind != "days_since"}
    fills.update({"open_complaints": 0, "held_vas": 0, "device_changes_365d": 0})
    df = df.fillna(fills)
    empty = F.array().cast("array<string>")
    return df.select(
        "*",
        F.lit(day).cast("date").alias("snapshot_date"),
    ).withColumn("held_products", F.coalesce("held_products", empty)).withColumn("optouts", F.coalesce("optouts", empty))


def apply_tags(base, cat: Catalogue):
    """Pure transform: base columns -> customer_id, snapshot_date and one column per tag (declared types)."""
    from pyspark.sql import functions as F

    df = base
    for layer in cat.layers:
        cols = []
        for t in layer:
            col = F.expr(t.expr).cast(t.type)
            if t.default is not None:
                col = F.coalesce(col, F.lit(t.default).cast(t.type))
            cols.append(col.alias(t.id))
        df = df.select("*", *cols)
    return df.select("customer_id", "snapshot_date", *[F.col(t) for t in cat.ids])


def check_types(spark, cat: Catalogue) -> None:
    """Analyse every expression on an empty frame of the base schema: a tag whose expression does not
    produce its declared kind of value (a string where a flag is declared, say) fails, naming the tag."""
    from pyspark.sql import functions as F

    schema = ", ".join(f"`{k}` {v}" for k, v in {"customer_id": "string", **cat.base_columns()}.items())
    df = spark.createDataFrame([], schema)
    kinds = {"boolean": "boolean", "int": "number", "bigint": "number", "double": "number", "string": "string", "date": "date"}
    for layer in cat.layers:
        exprs = []
        for t in layer:
            try:
                exprs.append(F.expr(t.expr).alias(t.id))
            except Exception as exc:  # noqa: BLE001 - parse errors are reported with the tag's id
                raise CatalogueError(f"tag {t.id}: expression does not parse: {exc}") from exc
        try:
            probe = df.select(*exprs)
        except Exception as exc:  # noqa: BLE001
            raise CatalogueError(f"tags {[t.id for t in layer]}: {str(exc).splitlines()[0]}") from exc
        for t, f in zip(layer, probe.schema.fields, strict=True):
            actual = f.dataType.simpleString()
            actual_kind = "number" if actual in ("int", "bigint", "double", "float", "smallint", "tinyint") or actual.startswith("decimal") else actual
            if actual_kind != kinds[t.type] and actual != "void":
                raise CatalogueError(f"tag {t.id}: declared {t.type} but its expression gives {actual}")
        df = df.select("*", *[F.expr(t.expr).cast(t.type).alias(t.id) for t in layer])


def catalogue_frame(spark, cat: Catalogue):
    rows = [
        (t.id, t.name_en, t.name_zh, t.family, t.type, t.grain, t.expr, t.description, t.owner, t.version, t.default)
        for t in cat.tags
    ]
    return spark.createDataFrame(
        rows,
        "tag_id string, name_en string, name_zh string, family string, value_type string, grain string, "
        "definition string, description string, owner string, version int, empty_value string",
    )


def run(spark, paths: Paths, day: dt.date, cat: Catalogue | None = None) -> dict[str, int]:
    """Compute and write the tag snapshot for ``day`` and the catalogue table; returns counts."""
    t0 = time.time()
    cat = cat or load_catalogue()
    check_types(spark, cat)
    tags = apply_tags(base_frame(spark, paths, day, cat), cat)
    lake.replace(tags, paths, "gold.customer_tags", f"snapshot_date = '{day.isoformat()}'", merge_schema=True)
    lake.replace(catalogue_frame(spark, cat), paths, "gold.tag_catalogue", None)
    n = lake.read(spark, paths, "gold.customer_tags").where(f"snapshot_date = '{day.isoformat()}'").count()
    print(f"tags {day}: {len(cat.tags)} tags for {n} customers -> gold.customer_tags ({time.time() - t0:.1f}s)", flush=True)
    return {"customers": n, "tags": len(cat.tags)}
