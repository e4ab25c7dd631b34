"""The tag catalogue (``conf/tags.yaml``) as checked data: tags, windows, window features, layers.

Loading checks duplicate ids, unknown families, kinds, types, columns and functions, circular references and
wrong types (Spark's analysis of each expression on an empty frame); each error names the tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.platform.config import CONF_DIR, load_yaml
from jobs.platform.errors import CatalogueError, UnsafeExpression
from jobs.platform.expressions import ALLOWED_FUNCTIONS, identifiers
from jobs.stages.conform import MEASURE_NAMES

FAMILIES = {"social", "value", "service", "marketing", "contact", "lifecycle", "tier", "model"}
TYPES = {"boolean", "int", "bigint", "double", "string", "date"}
BAND_DECIMALS = 2  # quantile-band cut points are exact percentiles of the value at this precision

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
    from jobs.platform.config import business

    return {p["id"]: p["category"] for p in business("products")["products"]}


def categories() -> list[str]:
    return sorted(set(product_categories().values()))


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
    from jobs.platform.config import business

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
    from jobs.platform.config import business

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
