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
from jobs.privacy import hmac_sha256

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
    "device_handsets_24m": "int",
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
    kind: str = "rule"
    empty: str = "null"  # "null", or "carry": keep the customer's last non-empty value
    band_of: str | None = None  # quantile bands: the tag whose distribution is cut
    bands: int = 0

    def refs(self) -> set[str]:
        return identifiers(self.expr)[0] | ({self.band_of} if self.band_of else set())


@dataclass
class Catalogue:
    version: int
    windows: dict[str, tuple[int, int]]
    features: dict[str, tuple[str, str, str]]  # name -> (kind, measure, window)
    tags: list[Tag]
    source: Path | None = None
    layers: list[list[Tag]] = field(default_factory=list)
    drift_limit: float = 0.1

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.tags]

    def base_columns(self) -> dict[str, str]:
        cols = dict(PROFILE_COLUMNS)
        cols.update(STATE_COLUMNS)
        cols.update({f"{c}_held": "int" for c in categories()})
        cols.update({f: ("int" if k == "days_with" or k == "days_since" else "double") for f, (k, _, _) in self.features.items()})
        return cols


def product_categories() -> dict[str, str]:
    """Product id -> category, from conf/products.yaml (holdings per category are base columns)."""
    from jobs.config import business

    return {p["id"]: p["category"] for p in business("products")["products"]}


def categories() -> list[str]:
    return sorted(set(product_categories().values()))


_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_IDENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(\s*\()?")


class UnsafeExpression(CatalogueError):
    """An expression uses syntax the tag language does not allow."""


FORBIDDEN = {"`": "back-quoted names", ";": "statement separators", "--": "comments", "/*": "comments", '"': "double-quoted strings", "$": "variables"}


def identifiers(expr: str) -> tuple[set[str], set[str]]:
    """(column names, function names) used by a SQL expression; string literals and keywords are skipped,
    as are struct field accesses (``.c``). Syntax that could hide a name from this check (back-quoted
    identifiers, comments, several statements) is refused outright."""
    text = _STRING.sub("''", expr)
    for token, what in FORBIDDEN.items():
        if token in text:
            raise UnsafeExpression(f"{what} ({token!r}) are not allowed in expressions: {expr[:80]!r}")
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


def check_expression(owner: str, expr: str, known: set[str]) -> str:
    """A business rule's SQL (product, channel, lifecycle or tier rule): safe syntax, allow-listed functions
    and known tags only; the error names ``owner``."""
    try:
        cols, funcs = identifiers(expr)
    except CatalogueError as exc:
        raise CatalogueError(f"{owner}: {exc}") from exc
    if funcs - ALLOWED_FUNCTIONS:
        raise CatalogueError(f"{owner}: function(s) not allowed: {sorted(funcs - ALLOWED_FUNCTIONS)}")
    if cols - known:
        raise CatalogueError(f"{owner}: unknown tag(s) {sorted(cols - known)}")
    return expr


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


KINDS = {"rule", "metric", "band", "quantile_band", "trend", "recency", "top", "count", "attribute", "segment"}
EMPTY_RULES = {"null", "carry"}


def _param_values(name: str, spec: Any) -> dict[str, dict[str, Any]]:
    """A generator parameter's values and their labels: inline, or from business configuration."""
    from jobs.config import business

    if isinstance(spec, dict) and "source" in spec:
        src = spec["source"]
        if src == "products":
            return {p["id"].lower(): {"id": p["id"], "en": p["name_en"], "zh": p["name_zh"], "category": p["category"]}
                    for p in business("products")["products"]}
        if src == "stages":
            return {st["stage"]: {"en": st["stage"], "zh": st.get("zh", st["stage"])} for st in business("lifecycle")["stages"]}
        if src == "tiers":
            return {t["tier"]: {"en": t["tier"].replace("_", " "), "zh": t.get("zh", t["tier"])} for t in business("tiers")["tiers"]}
        raise CatalogueError(f"params.{name}: unknown source {src!r}")
    if not isinstance(spec, dict):
        raise CatalogueError(f"params.{name}: expected a mapping of values to labels")
    return {str(k): dict(v or {}) for k, v in spec.items()}


def _expand(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Tags generated from parameters: each template is formatted for every combination of its `over`."""
    import itertools

    params = {k: _param_values(k, v) for k, v in (raw.get("params") or {}).items()}
    out = []
    for gen in raw.get("generated") or []:
        over = gen.get("over") or []
        unknown = [p for p in over if p not in params]
        if unknown:
            raise CatalogueError(f"generated {gen.get('template', {}).get('id')}: unknown parameter(s) {unknown}")
        skip = set(gen.get("skip") or [])
        for combo in itertools.product(*[params[p].items() for p in over]):
            values: dict[str, Any] = {}
            for pname, (key, labels) in zip(over, combo, strict=True):
                values[pname] = key
                values.update({f"{pname}_{k}": v for k, v in labels.items()})
            entry = {}
            for k, v in gen["template"].items():
                try:
                    entry[k] = v.format_map(values) if isinstance(v, str) else v
                except KeyError as exc:
                    raise CatalogueError(f"generated {gen['template'].get('id')}: no parameter label {exc}") from exc
            if entry["id"] not in skip:
                out.append(entry)
    return out


def _rules_expr(source: str) -> str:
    from jobs.config import business

    rules, key = {"lifecycle": (business("lifecycle")["stages"], "stage"), "tiers": (business("tiers")["tiers"], "tier")}[source]
    return first_match(rules, key)


def first_match(rules: list[dict[str, Any]], key: str) -> str:
    """SQL CASE expression: the ``key`` of the first rule whose condition holds."""
    branches = " ".join(f"WHEN ({r['when']}) THEN '{r[key]}'" for r in rules)
    return f"CASE {branches} END"


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
    for entry in list(raw.get("tags") or []) + _expand(raw) + list(extra_tags or []):
        tid = entry.get("id")
        if not tid or not re.fullmatch(r"[a-z][a-z0-9_]*", str(tid)):
            raise CatalogueError(f"tag {tid!r}: id must be lower_snake_case")
        if entry.get("rules"):
            if entry["rules"] not in ("lifecycle", "tiers"):
                raise CatalogueError(f"tag {tid}: rules must be 'lifecycle' or 'tiers'")
            entry = {**entry, "expr": _rules_expr(entry["rules"])}
        if entry.get("kind") == "quantile_band":
            entry = {**entry, "expr": entry.get("expr") or f"quantile bands of {entry.get('of')}"}
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
        kind = entry.get("kind", {"boolean": "rule", "string": "attribute", "date": "attribute"}.get(entry["type"], "metric"))
        if kind not in KINDS:
            raise CatalogueError(f"tag {tid}: unknown kind {kind!r} (one of {sorted(KINDS)})")
        empty = entry.get("empty", "null")
        if empty not in EMPTY_RULES:
            raise CatalogueError(f"tag {tid}: empty must be one of {sorted(EMPTY_RULES)}, not {empty!r}")
        band_of, bands = None, 0
        if kind == "quantile_band":
            band_of, bands = entry.get("of"), int(entry.get("bands", 0))
            if not band_of or not 2 <= bands <= 20 or entry["type"] != "string":
                raise CatalogueError(f"tag {tid}: a quantile band needs 'of' (a numeric tag), 'bands' (2-20) and type string")
        tags.append(Tag(
            id=tid, family=entry["family"], type=entry["type"], expr=str(entry["expr"]),
            name_en=entry["name_en"], name_zh=entry["name_zh"], description=entry["description"],
            owner=entry.get("owner", owner), version=int(entry.get("version", version)),
            default=None if entry.get("default") is None else str(entry["default"]).lower(),
            kind=kind, empty=empty, band_of=band_of, bands=bands,
        ))
    cat = Catalogue(version=version, windows=windows, features=features, tags=tags, source=path,
                    drift_limit=float((raw.get("statistics") or {}).get("drift_limit", 0.1)))
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
    by_id = {t.id: t for t in cat.tags}
    for t in cat.tags:
        if t.kind == "quantile_band" and t.band_of:
            if t.band_of not in by_id or by_id[t.band_of].type not in ("int", "bigint", "double"):
                raise CatalogueError(f"tag {t.id}: 'of' must name a numeric tag, not {t.band_of!r}")
            deps[t.id] = {t.band_of}
            continue
        try:
            cols, funcs = identifiers(t.expr)
        except UnsafeExpression as exc:
            raise CatalogueError(f"tag {t.id}: {exc}") from exc
        bad_funcs = sorted(funcs - ALLOWED_FUNCTIONS)
        if bad_funcs:
            raise CatalogueError(f"tag {t.id}: function(s) not allowed in tag expressions: {', '.join(bad_funcs)}")
        unknown = sorted(cols - ids - set(base))
        if unknown:
            raise CatalogueError(f"tag {t.id}: unknown column(s) or tag(s): {', '.join(unknown)}")
        deps[t.id] = cols & ids
    quantile = {t.id for t in cat.tags if t.kind == "quantile_band"}
    for t in cat.tags:
        used = deps[t.id] & quantile
        if used and t.kind != "quantile_band":
            raise CatalogueError(f"tag {t.id}: cannot use quantile band tag(s) {sorted(used)}: bands are cut after all other tags")
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
def profile_asof(spark, paths: Paths, day: dt.date, version: int | None = None):
    """The latest CRM record of every customer as of ``day`` (closed lines included; callers filter)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    crm = lake.read(spark, paths, "bronze.crm_profile", version).where(F.col("delivery_date") <= F.lit(day))
    w = Window.partitionBy("customer_id").orderBy(F.col("record_date").desc(), F.col("delivery_date").desc())
    return crm.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn", "delivery_date", "_source_file", "record_date")


SUM_SCALE = 10_000  # window sums add whole ten-thousandths (measures carry at most 4 decimals)
BAND_DECIMALS = 2  # quantile-band cut points are exact percentiles of the value at this precision


def window_features(daily, day: dt.date, cat: Catalogue):
    """Pure transform: silver.customer_day rows -> one row per customer with every window feature of the
    catalogue, in one aggregation. Rows after ``day`` (or older than the longest window) are ignored.

    Sums are added as whole ten-thousandths (longs), not doubles: a sum of doubles depends on the order of
    its terms, which depends on how the data are partitioned, so a cluster and a laptop would disagree in
    the last bits, and a tag that rounds a sum could then flip (seen in ``make cluster-run``)."""
    from pyspark.sql import functions as F

    longest = max(b for _, b in cat.windows.values())
    daily = daily.where(
        (F.col("day") <= F.lit(day)) & (F.col("day") >= F.lit(day - dt.timedelta(days=longest)))
    ).withColumn("_ago", F.datediff(F.lit(day), F.col("day")))
    aggs = []
    for name, (kind, measure, window) in cat.features.items():
        a, b = cat.windows[window]
        inside = F.col("_ago").between(a, b)
        if kind == "sum":  # in whole 1/SUM_SCALE units: exact, so the same on any partitioning
            units = F.round(F.col(measure) * SUM_SCALE).cast("long")
            aggs.append((F.sum(F.when(inside, units).otherwise(0)) / SUM_SCALE).cast("double").alias(name))
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
        # first_seen_date: the first delivery dates each handset back to when it was first seen (deliveries made
        # before the column existed read null: their change date stands in).
        F.max_by(F.coalesce("first_seen_date", "change_date"), "change_date").alias("device_since"),
        F.max_by("handsets_24m", "change_date").alias("device_handsets_24m"),
        F.sum(F.when(F.col("change_date") > F.lit(day - dt.timedelta(days=365)), 1).otherwise(0)).cast("int").alias("device_changes_365d"),
    )
    w = Window.partitionBy("customer_id", "product_id").orderBy(F.col("order_ts").desc(), F.col("order_id").desc())
    orders = lake.read(spark, paths, "bronze.orders").where(upto)
    cat_of = F.create_map(*[x for pid, c in product_categories().items() for x in (F.lit(pid), F.lit(c))])
    holdings = (
        orders.withColumn("_rn", F.row_number().over(w)).where("_rn = 1")
        .where(F.col("action").isin("order", "trial_start", "trial_convert"))
        .withColumn("_cat", cat_of[F.col("product_id")])
        .groupBy("customer_id")
        .agg(
            F.array_sort(F.collect_list("product_id")).alias("held_products"),
            F.sum(F.col("_cat").isin("vas", "games").cast("int")).cast("int").alias("held_vas"),
            *[F.sum((F.col("_cat") == c).cast("int")).cast("int").alias(f"{c}_held") for c in categories()],
        )
    )
    wo = Window.partitionBy("customer_id", "channel").orderBy(F.col("event_ts").desc())
    optouts = (
        lake.read(spark, paths, "bronze.optouts").where(upto)
        .withColumn("_rn", F.row_number().over(wo)).where("_rn = 1").where(F.col("action") == "opt_out")
        .groupBy("customer_id").agg(F.array_sort(F.collect_list("channel")).alias("optouts"))
    )
    return complaints, devices, holdings, optouts


def base_frame(spark, paths: Paths, day: dt.date, cat: Catalogue, hash_key: bytes | None = None):
    """Every column a tag may use, one row per customer open on ``day``."""
    from pyspark.sql import functions as F

    profile = profile_asof(spark, paths, day).where(F.col("status") != "closed").where(F.col("activation_date") <= F.lit(day))
    feats = window_features(lake.read(spark, paths, "silver.customer_day"), day, cat)
    df = profile.join(feats, on="customer_id", how="left")
    for part in state_asof(spark, paths, day):
        df = df.join(part, on="customer_id", how="left")
    fills = {name: 0 for name, (kind, _, _) in cat.features.items() if kind != "days_since"}
    fills.update({"open_complaints": 0, "held_vas": 0, "device_changes_365d": 0, **{f"{c}_held": 0 for c in categories()}})
    df = df.fillna(fills)
    empty = F.array().cast("array<string>")
    df = df.select(
        "*",
        F.lit(day).cast("date").alias("snapshot_date"),
    ).withColumn("held_products", F.coalesce("held_products", empty)).withColumn("optouts", F.coalesce("optouts", empty))
    if hash_key is not None:  # the analysts' table carries a keyed hash of the phone number, never the number
        df = df.withColumn("msisdn_hash", hmac_sha256(F.col("msisdn"), hash_key))
    return df.drop("msisdn")


def apply_tags(base, cat: Catalogue):
    """Base columns -> customer_id, snapshot_date and one column per tag (declared types).

    One ``select`` per dependency layer. Quantile bands come last: one aggregation computes every band's cut
    points (a handful of numbers to the driver), then one more ``select``. The cut points are exact percentiles
    of the value rounded to ``BAND_DECIMALS`` places: exact, so a cluster and a laptop cut the same bands
    whatever the partitioning (approximate percentiles did not); rounded, so the aggregation holds one count
    per distinct value (bounded) rather than one per customer.
    """
    from pyspark.sql import functions as F

    df = base
    for layer in cat.layers:
        cols = []
        for t in layer:
            if t.kind == "quantile_band":
                continue
            col = F.expr(t.expr).cast(t.type)
            if t.default is not None:
                col = F.coalesce(col, F.lit(t.default).cast(t.type))
            cols.append(col.alias(t.id))
        if cols:
            df = df.select("*", *cols)
    bands = [t for t in cat.tags if t.kind == "quantile_band"]
    if bands:
        df = df.cache()
        probs = {t.id: [i / t.bands for i in range(1, t.bands)] for t in bands}
        cuts_row = df.agg(*[F.percentile(F.round(F.col(t.band_of).cast("double"), BAND_DECIMALS),
                                         F.array(*[F.lit(p) for p in probs[t.id]])).alias(t.id)
                            for t in bands]).first()
        df = df.select("*", *[quantile_band(F.col(t.band_of), list(cuts_row[t.id] or [])).alias(t.id) for t in bands])
    keep = ["msisdn_hash"] if "msisdn_hash" in df.columns else []
    return df.select("customer_id", "snapshot_date", *keep, *[F.col(t) for t in cat.ids])


def quantile_band(col, cuts: list[float]):
    """'Q1' (lowest) .. 'Qn' from ascending cut points; null stays null."""
    from pyspark.sql import functions as F

    expr = F.lit(f"Q{len(cuts) + 1}")
    for i in range(len(cuts), 0, -1):
        expr = F.when(col <= F.lit(cuts[i - 1]), F.lit(f"Q{i}")).otherwise(expr)
    return F.when(col.isNull(), F.lit(None).cast("string")).otherwise(expr)


def carry_forward(tags, previous, cat: Catalogue):
    """Tags whose empty-value rule is ``carry`` keep the customer's value from the previous snapshot when
    today's is null. ``previous`` is the last snapshot before today (or None on the first day)."""
    from pyspark.sql import functions as F

    carry = [t.id for t in cat.tags if t.empty == "carry"]
    if not carry or previous is None:
        return tags
    prev = previous.select("customer_id", *[F.col(c).alias(f"_prev_{c}") for c in carry])
    joined = tags.join(prev, on="customer_id", how="left")
    keep = ["msisdn_hash"] if "msisdn_hash" in tags.columns else []
    return joined.select(
        "customer_id", "snapshot_date", *keep,
        *[F.coalesce(F.col(c), F.col(f"_prev_{c}")).alias(c) if c in carry else F.col(c) for c in cat.ids],
    )


def check_types(spark, cat: Catalogue) -> None:
    """Analyse every expression on an empty frame of the base schema: a tag whose expression does not
    produce its declared kind of value (a string where a flag is declared, say) fails, naming the tag."""
    from pyspark.sql import functions as F

    schema = ", ".join(f"`{k}` {v}" for k, v in {"customer_id": "string", **cat.base_columns()}.items())
    df = spark.createDataFrame([], schema)
    kinds = {"boolean": "boolean", "int": "number", "bigint": "number", "double": "number", "string": "string", "date": "date"}
    for full_layer in cat.layers:
        layer = [t for t in full_layer if t.kind != "quantile_band"]
        if not layer:
            continue
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
        (t.id, t.name_en, t.name_zh, t.family, t.kind, t.type, t.grain, definition(t), t.description, t.owner,
         t.version, t.empty, t.default)
        for t in cat.tags
    ]
    return spark.createDataFrame(
        rows,
        "tag_id string, name_en string, name_zh string, family string, kind string, value_type string, grain string, "
        "definition string, description string, owner string, version int, empty_rule string, default_value string",
    )


def definition(t: Tag) -> str:
    if t.kind == "quantile_band":
        return f"{t.bands} quantile bands of {t.band_of} (Q1 lowest), cut points (exact, to {BAND_DECIMALS} decimals) recomputed each snapshot"
    return t.expr


def previous_snapshot(spark, paths: Paths, day: dt.date):
    """The tag table's last snapshot before ``day``, or None."""
    from pyspark.sql import functions as F

    if not lake.exists(spark, paths, "gold.customer_tags"):
        return None
    table = lake.read(spark, paths, "gold.customer_tags")
    last = table.where(F.col("snapshot_date") < F.lit(day)).agg(F.max("snapshot_date")).first()[0]
    return None if last is None else table.where(F.col("snapshot_date") == F.lit(last))


def run(spark, paths: Paths, day: dt.date, cat: Catalogue | None = None, stats: bool = True) -> dict[str, int]:
    """Compute and write the tag snapshot for ``day``, the catalogue table and (unless ``stats`` is off) the
    day's tag statistics."""
    from jobs import tagstats

    t0 = time.time()
    cat = cat or load_catalogue()
    check_types(spark, cat)
    from jobs.config import settings
    from jobs.privacy import hash_key

    key = hash_key(settings().env, paths.root)
    tags = apply_tags(base_frame(spark, paths, day, cat, key), cat)
    tags = carry_forward(tags, previous_snapshot(spark, paths, day), cat)
    lake.replace(tags, paths, "gold.customer_tags", f"snapshot_date = '{day.isoformat()}'", merge_schema=True)
    spark.catalog.clearCache()
    lake.replace(catalogue_frame(spark, cat), paths, "gold.tag_catalogue", None)
    written = lake.read(spark, paths, "gold.customer_tags").where(f"snapshot_date = '{day.isoformat()}'")
    n = written.count()
    print(f"tags {day}: {len(cat.tags)} tags for {n} customers -> gold.customer_tags ({time.time() - t0:.1f}s)", flush=True)
    if stats:
        tagstats.run(spark, paths, day, cat)
    return {"customers": n, "tags": len(cat.tags)}
