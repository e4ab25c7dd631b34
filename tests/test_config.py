"""Environments: the master comes from configuration, or from spark-submit when the environment says so."""

from __future__ import annotations

import dataclasses

import pytest

from jobs.platform.config import settings
from jobs.platform.errors import CatalogueError, ConfigError
from jobs.platform.spark import SUBMIT, session_builder


def test_master_comes_from_the_environment_file(monkeypatch):
    monkeypatch.delenv("CPC_SPARK_MASTER", raising=False)
    assert session_builder(settings("local"))._options["spark.master"] == "local[2]"
    assert session_builder(settings("cluster"))._options["spark.master"] == "spark://127.0.0.1:7077"
    monkeypatch.setenv("CPC_SPARK_MASTER", "local[1]")
    assert session_builder(settings("local"))._options["spark.master"] == "local[1]"


def test_submit_leaves_the_master_to_spark_submit(monkeypatch):
    monkeypatch.delenv("CPC_SPARK_MASTER", raising=False)
    cfg = settings("submit")
    assert cfg.spark_master == SUBMIT
    options = session_builder(cfg)._options
    assert "spark.master" not in options  # a master set in code would win over spark-submit --master
    assert options["spark.sql.shuffle.partitions"] == "400"
    assert "io.delta.sql.DeltaSparkSessionExtension" in options["spark.sql.extensions"]


def test_the_driver_keeps_a_bounded_status_history_unless_the_environment_says_otherwise(monkeypatch):
    """The status store's defaults (1,000 SQL executions with their plan text, kept with the UI off) held part of the
    test session's heap for the whole suite."""
    monkeypatch.delenv("CPC_SPARK_MASTER", raising=False)
    options = session_builder(settings("local"))._options
    assert options["spark.sql.ui.retainedExecutions"] == "50"
    cfg = settings("local")
    cfg = dataclasses.replace(cfg, spark_conf={**cfg.spark_conf, "spark.sql.ui.retainedExecutions": "500"})
    assert session_builder(cfg)._options["spark.sql.ui.retainedExecutions"] == "500"


def test_unknown_environment_names_the_known_ones():
    with pytest.raises(ConfigError, match="known environments: cluster, local, submit, test"):
        settings("prod")


# ---- typed configuration: every error names the file, the entry and the field -----------------------------

def test_a_wrong_type_in_products_names_the_file_the_product_and_the_field():
    import copy

    import yaml

    from jobs.platform.business import ProductCatalogue
    from jobs.platform.config import CONF_DIR, validate

    raw = copy.deepcopy(yaml.safe_load((CONF_DIR / "products.yaml").read_text(encoding="utf-8")))
    raw["products"][3]["price"] = "five yuan"
    with pytest.raises(ConfigError) as err:
        validate(ProductCatalogue, raw, CONF_DIR / "products.yaml")
    assert str(err.value) == ("conf/products.yaml: products[3] (id 'P_SMS_200'): price: "
                              "Input should be a valid number, unable to parse string as a number")


def test_the_products_loader_refuses_a_bad_file(tmp_path, monkeypatch):
    from jobs.platform import business

    bad = tmp_path / "products.yaml"
    bad.write_text((business.PRODUCTS).read_text(encoding="utf-8").replace("    price: 30\n", "    price: [30]\n", 1)
                   .replace("    value: 10\n", "    value: 10\n    margin: 3\n", 1), encoding="utf-8")
    monkeypatch.setattr(business, "PRODUCTS", bad)
    business.products.cache_clear()
    try:
        with pytest.raises(ConfigError) as err:
            business.products()
    finally:
        business.products.cache_clear()
    lines = str(err.value).splitlines()
    assert lines == [f"{bad}: products[1] (id 'P_DATA_5G'): price: Input should be a valid number",
                     f"{bad}: products[2] (id 'P_DATA_TOPUP'): margin: Extra inputs are not permitted"]


def test_a_stray_key_in_a_tag_entry_names_the_tag_and_the_key(tmp_path):
    from jobs.platform.config import CONF_DIR
    from jobs.stages.tags import load_catalogue

    entry = {"id": "x_t", "family": "value", "type": "boolean", "expr": "true", "name_en": "t", "name_zh": "t",
             "description": "t", "colour": "red"}
    with pytest.raises(CatalogueError, match=r"extra_tags\[0\] \(id 'x_t'\): colour: Extra inputs are not permitted"):
        load_catalogue(extra_tags=[entry])
    # The YAML trap this guards against: an unquoted comma in a flow mapping cuts the text into stray keys.
    text = (CONF_DIR / "tags.yaml").read_text(encoding="utf-8")
    quoted = 'description: "Office, IT, civil-service or teaching occupation."}'
    assert quoted in text
    cut = tmp_path / "tags.yaml"
    cut.write_text(text.replace(quoted, "description: Office, IT, civil-service or teaching occupation.}"), encoding="utf-8")
    with pytest.raises(CatalogueError) as err:
        load_catalogue(cut)
    assert str(err.value).splitlines()[0].startswith(
        f"{cut}: tags[12] (id 'soc_white_collar'): IT: Extra inputs are not permitted (a key without a value")


def test_only_the_customer_day_grain_is_supported():
    from jobs.stages.tags import load_catalogue

    entry = {"id": "x_g", "family": "value", "type": "boolean", "expr": "true", "name_en": "t", "name_zh": "t",
             "description": "t", "grain": "customer/month"}
    with pytest.raises(CatalogueError, match="tag x_g: grain 'customer/month' is not supported"):
        load_catalogue(extra_tags=[entry])
    assert {t.grain for t in load_catalogue().tags} == {"customer/day"}


def test_a_missing_field_in_a_campaign_names_the_file_the_campaign_and_the_field():
    from jobs.stages.cpc import campaigns

    raw = {"id": "x", "target": "true", "products": ["P_NEWS"], "channels": ["sms_push"], "start": "2026-01-01"}
    with pytest.raises(ConfigError) as err:
        campaigns.parse(raw, "conf/campaigns/x.yaml", ["P_NEWS"], ["sms_push"], set())
    assert str(err.value) == "conf/campaigns/x.yaml: campaign x: holdout: Field required"
    with pytest.raises(ConfigError, match=r"conf/campaigns/x.yaml: campaign x: products: give a list of ids or 'all' or 'trial'"):
        campaigns.parse({**raw, "holdout": 0.1, "products": "everything"}, "conf/campaigns/x.yaml", ["P_NEWS"], ["sms_push"], set())
    with pytest.raises(ConfigError, match="conf/policy.yaml: frequency: Field required"):
        campaigns.load_policy({"max_active_contacts_per_day": 1})


def test_a_bad_environment_file_names_the_file_and_the_field(tmp_path, monkeypatch):
    from jobs.platform import config

    (tmp_path / "env").mkdir()
    bad = tmp_path / "env" / "bad.yaml"
    bad.write_text("spark:\n  mastr: local[1]\n  shuffle_partitions: many\nsample:\n  customers: 10\n  days: 2\n  seed: 1\n")
    monkeypatch.setattr(config, "CONF_DIR", tmp_path)
    with pytest.raises(ConfigError) as err:
        config.settings("bad")
    assert str(err.value).splitlines() == [
        f"{bad}: spark.shuffle_partitions: Input should be a valid integer, unable to parse string as an integer",
        f"{bad}: spark.mastr: Extra inputs are not permitted",
        f"{bad}: sample.end_date: Field required",
    ]


def test_environment_overrides_still_win(monkeypatch):
    monkeypatch.setenv("CPC_ROOT", "/tmp/cpc-root")
    monkeypatch.setenv("CPC_SPARK_CONF_JSON", '{"spark.sql.shuffle.partitions": 3}')
    cfg = settings("local")
    assert cfg.paths.root.as_posix() == "/tmp/cpc-root"
    assert cfg.spark_conf["spark.sql.shuffle.partitions"] == "3" and cfg.spark_conf["spark.driver.memory"] == "6g"
    assert cfg.sample == {"customers": 20000, "days": 107, "end_date": "2026-11-20", "seed": 42, "profile": "realistic",
                          "warmup_days": 2}
    monkeypatch.setenv("CPC_SPARK_CONF_JSON", "[1]")
    with pytest.raises(ConfigError, match="CPC_SPARK_CONF_JSON"):
        settings("local")


def test_the_nightly_s_tasks_come_from_the_environment_file_or_its_variable(monkeypatch):
    """``airflow.nightly_tasks`` (per_stage by default, or one), overridden by CPC_NIGHTLY_TASKS; a value outside the
    two names the file or the variable, the field and the values allowed."""
    from jobs.platform.config import CONF_DIR, EnvFile, validate

    monkeypatch.delenv("CPC_NIGHTLY_TASKS", raising=False)
    assert {settings(env).nightly_tasks for env in ("local", "test", "cluster", "submit")} == {"per_stage"}
    assert validate(EnvFile, {}, "x.yaml").airflow.nightly_tasks == "per_stage"
    monkeypatch.setenv("CPC_NIGHTLY_TASKS", "one")
    assert settings("local").nightly_tasks == "one"
    monkeypatch.setenv("CPC_NIGHTLY_TASKS", "single")
    with pytest.raises(ConfigError) as err:
        settings("local")
    assert str(err.value) == "CPC_NIGHTLY_TASKS='single': Input should be 'per_stage' or 'one'"
    with pytest.raises(ConfigError) as err:
        validate(EnvFile, {"airflow": {"nightly_tasks": "all"}}, CONF_DIR / "env" / "local.yaml")
    assert str(err.value) == "conf/env/local.yaml: airflow.nightly_tasks: Input should be 'per_stage' or 'one'"


def test_the_shipped_configuration_loads():
    import models.propensity as pm
    from jobs.platform import business
    from jobs.serving.pull import load_systems
    from jobs.stages import maintenance, segments
    from jobs.stages.cpc import load_conf
    from jobs.stages.tags import load_catalogue

    for env in ("cluster", "local", "submit", "test"):
        settings(env)
    assert business.products().products and business.channels().channels
    cat = load_catalogue()
    assert len(cat.tags) >= 300
    products, channels, categories, camps, policy = load_conf()
    assert products and channels and categories and camps and policy.max_active_per_day == 1
    stages, tiers = segments.rules()
    assert stages[-1].when.strip() == "true" and tiers[-1].when.strip() == "true"
    assert set(load_systems({})) == {"sms_gateway", "wechat_platform", "email_platform", "call_centre"}
    assert maintenance.load().vacuum_retention_hours >= 168
    assert {m.id for m in pm.load_settings().models} >= {"churn", "take_data"}


def test_renaming_a_tag_code_reads_fails_at_load_naming_it_and_its_user(tmp_path):
    from jobs.platform import business
    from jobs.platform.config import CONF_DIR
    from jobs.stages.tags import load_catalogue
    from jobs.stages.tags.catalogue import CODE_TAGS, code_tags

    text = (CONF_DIR / "tags.yaml").read_text(encoding="utf-8")
    renamed = tmp_path / "tags.yaml"
    renamed.write_text(text.replace("{id: mkt_held_product_ids,", "{id: mkt_held_products,"), encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"tag mkt_held_product_ids: not in the catalogue, but jobs\.stages\.cpc\.decide"):
        load_catalogue(renamed)
    # per-channel tags come from conf/channels.yaml, not from a hand-written list
    optouts = {t for t in code_tags() if t.startswith("cp_optout_") and t not in CODE_TAGS}
    assert optouts == {f"cp_optout_{c}" for c in business.channels().ids("active")}
    assert set(code_tags()) <= set(load_catalogue().ids)


def test_the_class_archive_is_used_only_by_a_local_driver_that_asks_and_has_one(tmp_path, monkeypatch):
    """jobs/platform/jvm.py: the archive's options go to a local driver whose environment sets ``class_archive``,
    once the archive exists (`make setup` builds it); a missing one is no error, the JVM starts as before."""
    from jobs.platform import jvm

    monkeypatch.setenv("CPC_JARS_DIR", str(tmp_path / "jars"))
    assert jvm.driver_options("local[2]", False) == []
    path = jvm.archive_path()
    if path is None:
        pytest.skip("no java on this machine")
    assert path.parent == tmp_path / "cds" and path.name.startswith("spark-") and path.suffix == ".jsa"
    assert jvm.driver_options("local[2]", True) == [], "not built yet"
    path.parent.mkdir()
    path.write_bytes(b"")
    assert jvm.driver_options("local[2]", True) == [f"-XX:SharedArchiveFile={path}", jvm.QUIET]
    assert jvm.driver_options("spark://host:7077", True) == [] and jvm.driver_options("submit", True) == []
