"""The tag catalogue (``conf/tags.yaml``) as checked data: tags, windows, window features, layers.

Loading validates the file with typed models (a stray key in a tag entry, a wrong type: the error names the
file, the tag and the key), then checks duplicate ids, unknown families, kinds, types, grains, columns and
functions, circular references, the tags Python code reads by name (:data:`CODE_TAGS`) and wrong types
(Spark's analysis of each expression on an empty frame); each error names the tag.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, TypeAdapter
from pydantic import Tag as Member

from jobs.platform import business
from jobs.platform.config import CONF_DIR, ConfModel, Paths, Text, load_yaml, relative, validate
from jobs.platform.errors import CatalogueError, UnsafeExpression
from jobs.platform.expressions import ALLOWED_FUNCTIONS, identifiers
from jobs.stages.conform import MEASURE_NAMES

log = logging.getLogger(__name__)

FAMILIES = {"social", "value", "service", "marketing", "contact", "lifecycle", "tier", "model"}
TYPES = {"boolean", "int", "bigint", "double", "string", "date"}
BAND_DECIMALS = 2  # quantile-band cut points are exact percentiles of the value at this precision
GRAIN = "customer/day"  # one row per customer per snapshot date: the only grain the engine computes

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

# Tags that Python code reads by name (a column in a select, not an expression the catalogue checks): tag
# id -> who reads it. Each must be in the catalogue, so that renaming or removing one fails when the catalogue
# loads, naming the tag and its user, not deep in a nightly run. Per-channel ones: see code_tags().
CODE_TAGS: dict[str, str] = {
    "lc_stage": "jobs.stages.segments (gold.customer_segment.lifecycle_stage)",
    "tier_service": "jobs.stages.segments (gold.customer_segment.service_tier)",
    "mkt_held_product_ids": "jobs.stages.cpc.decide (the already_held rule)",
    "cp_optout_all": "jobs.stages.cpc.decide (the opt_out rule) and jobs.stages.export (the list guard)",
    "svc_open_complaint": "jobs.stages.cpc.decide (the open_complaint rule) and jobs.stages.export "
                          "(the list guard)",
    "cp_contacts_30d": "jobs.stages.cpc.decide (passive first: the chance of an inbound contact)",
    "val_tenure_days": "jobs.stages.cpc.decide (the quiet_period rule)",
    "soc_elderly": "jobs.stages.export (best_time in the outbound call list)",
    "mkt_price_sensitive": "jobs.stages.evaluate (the trial funnel's win-back step)",
}


def code_tags() -> dict[str, str]:
    """:data:`CODE_TAGS` and the per-channel tags code reads, derived from conf/channels.yaml: the opt-out
    flag ``cp_optout_<channel>`` of every active channel."""
    per_channel = {f"cp_optout_{c}": f"jobs.stages.cpc.decide (the opt_out rule) and jobs.stages.export (the list guard) "
                   f"for the active channel {c} (conf/channels.yaml)" for c in business.channels().ids("active")}
    return {**CODE_TAGS, **per_channel}


# ---- conf/tags.yaml as typed models ---------------------------------------------------------------------------
class TagEntry(ConfModel):
    """One tag of ``tags`` (or a generated family's ``template``). A key that is not one of these fields is
    refused. Fields are optional here: the loader reports what a tag lacks with messages naming the tag."""

    id: Text | None = None
    family: str | None = None
    type: str | None = None
    expr: Text | None = None
    name_en: str | None = None
    name_zh: str | None = None
    description: str | None = None
    owner: str | None = None  # default: the catalogue's
    version: int | None = None  # default: the catalogue's
    default: Text | None = None  # the value when the expression gives null
    grain: str | None = None  # only "customer/day"
    kind: str | None = None
    empty: str | None = None  # "null", or "carry": keep the customer's last non-empty value
    of: str | None = None  # quantile bands: the numeric tag cut
    bands: int | None = None  # quantile bands: how many
    rules: str | None = None  # "lifecycle" or "tiers": the expression is built from conf/<rules>.yaml


class FeatureSpec(ConfModel):
    windows: list[str] = Field(default_factory=list)
    measures: list[str] = Field(default_factory=list)


class Statistics(ConfModel):
    drift_limit: float = Field(0.1, ge=0, le=1)


class Label(ConfModel):
    """The labels of one value of a generator parameter, used in the generated names: ``{measure_en}``."""

    en: str
    zh: str
    family: str | None = None


class ParamSource(ConfModel):
    source: Literal["products", "stages", "tiers"]


def _param_kind(value: Any) -> str:
    return "source" if isinstance(value, dict) and "source" in value else "values"


# A parameter: its values inline (value -> labels), or read from business configuration ({source: products}).
Param = Annotated[
    Annotated[ParamSource, Member("source")] | Annotated[dict[str, Label], Member("values")],
    Discriminator(_param_kind),
]


class Generator(ConfModel):
    over: list[str] = Field(default_factory=list)
    skip: list[str] = Field(default_factory=list)
    template: TagEntry


class CatalogueFile(ConfModel):
    version: int = 1
    owner: str = "unknown"
    grain: str = GRAIN
    windows: dict[str, tuple[int, int]] = Field(default_factory=dict)  # [from, to] days before the snapshot
    statistics: Statistics = Field(default_factory=Statistics)
    features: dict[str, FeatureSpec] = Field(default_factory=dict)
    tags: list[TagEntry] = Field(default_factory=list)
    params: dict[str, Param] = Field(default_factory=dict)
    generated: list[Generator] = Field(default_factory=list)


EXTRA_TAGS = TypeAdapter(dict[str, list[TagEntry]])


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
    return business.products().category_of()


def categories() -> list[str]:
    return sorted(set(product_categories().values()))


def _features(raw: dict[str, FeatureSpec], windows: dict[str, tuple[int, int]]) -> dict[str, tuple[str, str, str]]:
    out: dict[str, tuple[str, str, str]] = {}
    for kind, spec in raw.items():
        for m in spec.measures:
            if m not in MEASURE_NAMES:
                raise CatalogueError(f"features.{kind}: unknown daily measure {m!r} (known: see jobs/stages/conform.py)")
            if kind == "days_since":
                out[f"days_since_{m}"] = (kind, m, max(windows, key=lambda w: windows[w][1]))
                continue
            for w in spec.windows:
                if w not in windows:
                    raise CatalogueError(f"features.{kind}: unknown window {w!r}")
                name = f"{m}_{w}" if kind == "sum" else f"days_with_{m}_{w}"
                if kind not in ("sum", "days_with"):
                    raise CatalogueError(f"features: unknown feature kind {kind!r}")
                out[name] = (kind, m, w)
    return out


KINDS = {"rule", "metric", "band", "quantile_band", "trend", "recency", "top", "count", "attribute", "segment"}
EMPTY_RULES = {"null", "carry"}


def _param_values(name: str, spec: ParamSource | dict[str, Label]) -> dict[str, dict[str, Any]]:
    """A generator parameter's values and their labels: inline, or from business configuration."""
    if isinstance(spec, ParamSource):
        if spec.source == "products":
            return {p.id.lower(): {"id": p.id, "en": p.name_en, "zh": p.name_zh, "category": p.category}
                    for p in business.products().products}
        if spec.source == "stages":
            return {st.stage: {"en": st.stage, "zh": st.zh or st.stage} for st in business.lifecycle().stages}
        if spec.source == "tiers":
            return {t.tier: {"en": t.tier.replace("_", " "), "zh": t.zh or t.tier} for t in business.tiers().tiers}
        raise CatalogueError(f"params.{name}: unknown source {spec.source!r}")
    return {str(k): v.model_dump(exclude_none=True) for k, v in spec.items()}


def _expand(raw: CatalogueFile, source: str) -> list[TagEntry]:
    """Tags generated from parameters: each template is formatted for every combination of its `over`."""
    import itertools

    params = {k: _param_values(k, v) for k, v in raw.params.items()}
    out = []
    for g, gen in enumerate(raw.generated):
        template = gen.template.model_dump(exclude_none=True)
        unknown = [p for p in gen.over if p not in params]
        if unknown:
            raise CatalogueError(f"generated {template.get('id')}: unknown parameter(s) {unknown}")
        skip = set(gen.skip)
        for combo in itertools.product(*[params[p].items() for p in gen.over]):
            values: dict[str, Any] = {}
            for pname, (key, labels) in zip(gen.over, combo, strict=True):
                values[pname] = key
                values.update({f"{pname}_{k}": v for k, v in labels.items()})
            entry = {}
            for k, v in template.items():
                try:
                    entry[k] = v.format_map(values) if isinstance(v, str) else v
                except KeyError as exc:
                    raise CatalogueError(f"generated {template.get('id')}: no parameter label {exc}") from exc
            if entry.get("id") not in skip:
                out.append(validate(TagEntry, entry, f"{source}: generated[{g}]", error=CatalogueError))
    return out


def _rules_expr(source: str) -> str:
    if source == "lifecycle":
        return first_match([(st.stage, st.when) for st in business.lifecycle().stages])
    return first_match([(t.tier, t.when) for t in business.tiers().tiers])


def first_match(rules: list[tuple[str, str]]) -> str:
    """SQL CASE expression: the name of the first (name, condition) whose condition holds."""
    branches = " ".join(f"WHEN ({when}) THEN '{name}'" for name, when in rules)
    return f"CASE {branches} END"


def _tag(entry, raw, seen: set[str]) -> Tag:
    """One checked tag from its validated entry (``seen``: the ids so far, for duplicates)."""
    tid = entry.id
    if not tid or not re.fullmatch(r"[a-z][a-z0-9_]*", str(tid)):
        raise CatalogueError(f"tag {tid!r}: id must be lower_snake_case")
    if entry.rules:
        if entry.rules not in ("lifecycle", "tiers"):
            raise CatalogueError(f"tag {tid}: rules must be 'lifecycle' or 'tiers'")
        entry = entry.model_copy(update={"expr": _rules_expr(entry.rules)})
    if entry.kind == "quantile_band":
        entry = entry.model_copy(update={"expr": entry.expr or f"quantile bands of {entry.of}"})
    missing = [k for k in ("family", "type", "expr", "name_en", "name_zh", "description") if not getattr(entry, k)]
    if missing:
        raise CatalogueError(f"tag {tid}: missing {', '.join(missing)}")
    if tid in seen:
        raise CatalogueError(f"tag {tid}: duplicate id")
    seen.add(tid)
    if entry.family not in FAMILIES:
        raise CatalogueError(f"tag {tid}: unknown family {entry.family!r} (one of {sorted(FAMILIES)})")
    if entry.type not in TYPES:
        raise CatalogueError(f"tag {tid}: unknown type {entry.type!r} (one of {sorted(TYPES)})")
    kind = entry.kind if entry.kind is not None else {"boolean": "rule", "string": "attribute", "date": "attribute"}.get(entry.type, "metric")
    if kind not in KINDS:
        raise CatalogueError(f"tag {tid}: unknown kind {kind!r} (one of {sorted(KINDS)})")
    empty = entry.empty if entry.empty is not None else "null"
    if empty not in EMPTY_RULES:
        raise CatalogueError(f"tag {tid}: empty must be one of {sorted(EMPTY_RULES)}, not {empty!r}")
    grain = entry.grain if entry.grain is not None else raw.grain
    if grain != GRAIN:
        raise CatalogueError(f"tag {tid}: grain {grain!r} is not supported: tags are computed one row per customer "
                             f"per snapshot date (grain {GRAIN!r})")
    band_of, bands = None, 0
    if kind == "quantile_band":
        band_of, bands = entry.of, int(entry.bands or 0)
        if not band_of or not 2 <= bands <= 20 or entry.type != "string":
            raise CatalogueError(f"tag {tid}: a quantile band needs 'of' (a numeric tag), 'bands' (2-20) and type string")
    return Tag(
        id=tid, family=entry.family, type=entry.type, expr=str(entry.expr),
        name_en=entry.name_en, name_zh=entry.name_zh, description=entry.description,
        owner=raw.owner if entry.owner is None else entry.owner, version=raw.version if entry.version is None else entry.version,
        default=None if entry.default is None else str(entry.default).lower(),
        grain=grain, kind=kind, empty=empty, band_of=band_of, bands=bands,
    )


def load_catalogue(path: Path | None = None, extra_tags: list[dict] | None = None) -> Catalogue:
    """Load and check the catalogue. ``extra_tags`` lets tests add entries without a file."""
    path = path or CONF_DIR / "tags.yaml"
    source = relative(path)
    raw = validate(CatalogueFile, (load_yaml(path) or {}) if path.exists() or extra_tags is None else {}, path,
                   error=CatalogueError)
    extra = validate(EXTRA_TAGS, {"extra_tags": list(extra_tags or [])}, "load_catalogue", error=CatalogueError)["extra_tags"]
    if raw.grain != GRAIN:
        raise CatalogueError(f"{source}: grain {raw.grain!r} is not supported: tags are computed one row per customer "
                             f"per snapshot date (grain {GRAIN!r})")
    windows = dict(raw.windows)
    for name, (a, b) in windows.items():
        if not 0 <= a <= b:
            raise CatalogueError(f"window {name}: [from, to] must satisfy 0 <= from <= to")
    features = _features(raw.features, windows)
    version = raw.version
    seen: set[str] = set()
    tags = [_tag(entry, raw, seen) for entry in [*raw.tags, *_expand(raw, source), *extra]]
    cat = Catalogue(version=version, windows=windows, features=features, tags=tags, source=path,
                    drift_limit=raw.statistics.drift_limit)
    if path.exists():  # not for a catalogue of ``extra_tags`` alone
        check_code_tags(cat)
    check(cat)
    return cat


def check_code_tags(cat: Catalogue) -> None:
    """Every tag Python code reads by name (:func:`code_tags`) is in the catalogue."""
    ids = set(cat.ids)
    missing = {tid: user for tid, user in code_tags().items() if tid not in ids}
    if missing:
        raise CatalogueError("; ".join(f"tag {tid}: not in the catalogue, but {user} reads it by name (rename it "
                                       f"there too, or keep the tag)" for tid, user in missing.items()))


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


# check_types costs seconds of driver time (every expression analysed by Spark) and its verdict depends only on
# what types_fingerprint hashes, so the tags stage checks a catalogue once: a fingerprint checked is remembered in
# the process and, across processes (each Airflow task is one), by a marker file under the storage root. Bump
# TYPES_CHECK_VERSION when check_types changes what it checks: every catalogue is then checked again.
TYPES_CHECK_VERSION = 1
_TYPES_CHECKED: set[str] = set()


def types_fingerprint(cat: Catalogue, spark=None) -> str:
    """What :func:`check_types`' verdict depends on, hashed: the base columns and their types, each layer's tags
    (id, type, kind, expression) and :data:`TYPES_CHECK_VERSION`; with ``spark``, its version and ANSI mode (type
    coercion differs). Another catalogue, products, lifecycle or tier rules, or Spark: another fingerprint."""
    engine = None if spark is None else [spark.version, spark.conf.get("spark.sql.ansi.enabled", None)]
    text = json.dumps({"check": TYPES_CHECK_VERSION, "engine": engine,
                       "base": [["customer_id", "string"], *[[k, v] for k, v in cat.base_columns().items()]],
                       "layers": [[[t.id, t.type, t.kind, t.expr] for t in layer] for layer in cat.layers]})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def types_marker(paths: Paths, fingerprint: str) -> Path:
    """The file that says a catalogue of this fingerprint passed :func:`check_types`: ``<root>/lake/_checks/``."""
    return paths.lake / "_checks" / f"tag_types_{fingerprint}.ok"


def types_checked(paths: Paths, fingerprint: str) -> bool:
    """Whether a catalogue of ``fingerprint`` passed :func:`check_types` already: in this process, or in any
    process on this storage root (its marker)."""
    if fingerprint in _TYPES_CHECKED:
        return True
    if types_marker(paths, fingerprint).exists():
        _TYPES_CHECKED.add(fingerprint)
        return True
    return False


def mark_types_checked(paths: Paths, fingerprint: str) -> None:
    """Remember that ``fingerprint`` passed :func:`check_types` (call it only after the check passed): in the
    process, and by its marker, written atomically. A marker that cannot be written only means the next
    process checks again."""
    _TYPES_CHECKED.add(fingerprint)
    marker = types_marker(paths, fingerprint)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "check": TYPES_CHECK_VERSION,
                                   "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}) + "\n")
        os.replace(tmp, marker)
    except OSError as exc:
        log.warning(f"tag catalogue: type check passed, but its marker {marker} could not be written ({exc}): "
                    f"the next process checks again")


CATALOGUE_SCHEMA = ("tag_id string, name_en string, name_zh string, family string, kind string, value_type string, "
                    "grain string, definition string, description string, owner string, version int, empty_rule string, "
                    "default_value string")


def catalogue_rows(cat: Catalogue) -> list[tuple]:
    """``gold.tag_catalogue``'s rows, one per tag, in :data:`CATALOGUE_SCHEMA`'s order."""
    return [
        (t.id, t.name_en, t.name_zh, t.family, t.kind, t.type, t.grain, definition(t), t.description, t.owner,
         t.version, t.empty, t.default)
        for t in cat.tags
    ]


def catalogue_frame(spark, cat: Catalogue):
    return spark.createDataFrame(catalogue_rows(cat), CATALOGUE_SCHEMA)


def same_catalogue(columns: list[tuple[str, str]], rows: list[tuple], cat: Catalogue) -> bool:
    """Whether a table with ``columns`` ((name, Spark simple type) pairs, in order) holding ``rows`` is exactly
    what :func:`catalogue_frame` writes for ``cat``: the same columns and the same rows, in any order."""
    expected = [tuple(c.split()) for c in CATALOGUE_SCHEMA.split(", ")]
    return [tuple(c) for c in columns] == expected and Counter(map(tuple, rows)) == Counter(catalogue_rows(cat))


def definition(t: Tag) -> str:
    if t.kind == "quantile_band":
        return f"{t.bands} quantile bands of {t.band_of} (Q1 lowest), cut points (exact, to {BAND_DECIMALS} decimals) recomputed each snapshot"
    return t.expr
