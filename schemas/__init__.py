"""Every input file's and table's contract, written once.

The simulator writes files with these columns, the ingest job parses them with these types, the Great
Expectations suites in ``expectations/`` check their values, and the tests build rows from them.

Landing files are ``<kind>_<YYYYMMDD>.csv.gz`` (pipe-delimited, UTF-8, one header line) with a control file
``<kind>_<YYYYMMDD>.ctl`` beside them (``rows=``, ``md5=`` of the gzip file), in ``landing/<YYYY-MM-DD>/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.types import (
    TYPES,  # the contract's type names; their Spark, Arrow and DuckDB forms: schemas.types
)

DELIMITER = "|"
# The longest text value a file column takes unless its Col says otherwise: names, places, product and model
# names are far shorter; a megabyte in a name column is a broken export, not a name.
STRING_LIMIT = 200
ID_LIMIT = 32  # ids and keys


@dataclass(frozen=True)
class Col:
    name: str
    type: str
    nullable: bool = False
    doc: str = ""
    max_length: int | None = None  # text columns: longest value accepted (STRING_LIMIT when not set)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type!r}")

    @property
    def limit(self) -> int | None:
        """The longest value a file may carry in this column (text only): a longer one is quarantined."""
        return (self.max_length or STRING_LIMIT) if self.type == "string" else None


@dataclass(frozen=True)
class FileSchema:
    """A daily delivery from one of the operator's systems."""

    kind: str
    source: str
    doc: str
    columns: tuple[Col, ...]
    keys: tuple[str, ...]
    # Column holding the event's date or time: it must fall on the delivery date.
    event_col: str | None = None
    # Rows must name a customer the CRM knows (as of the delivery date).
    checks_customer: bool = True

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def ids(self) -> list[str]:
        """The text columns that identify something (the keys, the customer): no padding, fixed case."""
        return [c.name for c in self.columns if c.type == "string" and (c.name in self.keys or c.name == "customer_id")]

    def col(self, name: str) -> Col:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.kind}: no column {name!r}")

    def file_name(self, day) -> str:
        return f"{self.kind}_{day:%Y%m%d}.csv.gz"

    def control_name(self, day) -> str:
        return f"{self.kind}_{day:%Y%m%d}.ctl"

    def spark_ddl(self) -> str:
        return ", ".join(f"`{c.name}` {c.type}" for c in self.columns)


# The usage file's data by application category (deep packet inspection), in file order: column -> what it is.
APP_CATEGORIES = {
    "video_mb": "data on video apps (MB)",
    "content_mb": "data on music, reading and news apps (MB)",
    "game_mb": "data on game apps (MB)",
    "travel_mb": "data on travel, maps and booking apps (MB)",
    "education_mb": "data on education and family apps (children's learning, family sharing) (MB)",
}

FILES: dict[str, FileSchema] = {
    f.kind: f
    for f in (
        FileSchema(
            kind="crm_profile",
            source="CRM",
            doc="Customer master data. The first delivery holds every customer; later ones hold new and changed customers.",
            columns=(
                Col("customer_id", "string", max_length=ID_LIMIT, doc="operator's customer number"),
                Col("msisdn", "string", max_length=20, doc="phone number (personal data)"),
                Col("gender", "string", nullable=True, doc="M or F"),
                Col("birth_year", "int", nullable=True),
                Col("city", "string"),
                Col("district", "string"),
                Col("occupation", "string", nullable=True),
                Col("activation_date", "date"),
                Col("brand", "string", doc="premium (postpaid high-end), regular, prepaid"),
                Col("plan_id", "string"),
                Col("monthly_fee", "double"),
                Col("contract_end_date", "date", nullable=True, doc="empty for customers without a contract"),
                Col("credit_level", "int", doc="1 (low) to 5 (high)"),
                Col("vip_level", "int", doc="0 none, 1 silver, 2 gold, 3 diamond (key customer)"),
                Col("has_wechat", "boolean"),
                Col("email", "string", nullable=True, max_length=254),
                Col("status", "string", doc="active, suspended, closed"),
                Col("record_date", "date", doc="date the record was produced"),
            ),
            keys=("customer_id",),
            event_col="record_date",
            checks_customer=False,
        ),
        FileSchema(
            kind="billing",
            source="BOSS billing",
            doc="Daily rated charges and payments, one row per customer with activity on the day.",
            columns=(
                Col("customer_id", "string", max_length=ID_LIMIT),
                Col("bill_date", "date"),
                Col("plan_fee", "double"),
                Col("voice_fee", "double"),
                Col("sms_fee", "double"),
                Col("data_fee", "double"),
                Col("vas_fee", "double"),
                Col("total_fee", "double"),
                Col("payment", "double"),
                Col("balance", "double"),
            ),
            keys=("customer_id", "bill_date"),
            event_col="bill_date",
        ),
        FileSchema(
            kind="usage",
            source="network mediation",
            doc="Daily usage per customer: voice, SMS, data, and the data by application category (deep packet inspection).",
            columns=(
                Col("customer_id", "string", max_length=ID_LIMIT),
                Col("usage_date", "date"),
                Col("voice_out_min", "double"),
                Col("voice_in_min", "double"),
                Col("out_calls", "int"),
                Col("sms_out", "int"),
                Col("data_mb", "double"),
                Col("roaming_min", "double"),
                *[Col(name, "double", doc=doc) for name, doc in APP_CATEGORIES.items()],
            ),
            keys=("customer_id", "usage_date"),
            event_col="usage_date",
        ),
        FileSchema(
            kind="contacts",
            source="contact centre and e-channels",
            doc="Every contact between customer and operator: 10086 agent, IVR, web, WAP, SMS hall, app and outbound touches.",
            columns=(
                Col("contact_id", "string", max_length=ID_LIMIT),
                Col("customer_id", "string", max_length=ID_LIMIT),
                Col("contact_ts", "timestamp"),
                Col("channel", "string"),
                Col("direction", "string", doc="in (customer came to us) or out (we reached out)"),
                Col("purpose", "string", doc="enquiry, billing, complaint, purchase, care, marketing, port_out_query "
                    "(the number-portability eligibility query a customer sends before moving to another operator)"),
                Col("duration_s", "int"),
                Col("resolved", "boolean"),
            ),
            keys=("contact_id",),
            event_col="contact_ts",
        ),
        FileSchema(
            kind="complaints",
            source="complaint handling",
            doc="Complaint events: a complaint is opened, and later closed.",
            columns=(
                Col("complaint_id", "string", max_length=ID_LIMIT),
                Col("customer_id", "string", max_length=ID_LIMIT),
                Col("event_ts", "timestamp"),
                Col("event", "string", doc="opened or closed"),
                Col("category", "string", doc="network, billing, service, marketing"),
                Col("severity", "int", doc="1 low to 3 high"),
            ),
            keys=("complaint_id", "event"),
            event_col="event_ts",
        ),
        FileSchema(
            kind="orders",
            source="order management",
            doc="Product orders, cancellations and trials.",
            columns=(
                Col("order_id", "string", max_length=ID_LIMIT),
                Col("customer_id", "string", max_length=ID_LIMIT),
                Col("order_ts", "timestamp"),
                Col("product_id", "string"),
                Col("action", "string", doc="order, cancel, trial_start, trial_convert, trial_expire"),
                Col("channel", "string"),
                Col("price", "double"),
            ),
            keys=("order_id",),
            event_col="order_ts",
        ),
        FileSchema(
            kind="devices",
            source="device registry (IMEI)",
            doc="A customer's SIM seen in a new handset. The first delivery lists the handset every customer uses.",
            columns=(
                Col("customer_id", "string", max_length=ID_LIMIT),
                Col("change_date", "date"),
                Col("first_seen_date", "date", doc="when the SIM was first seen in this handset: the change date for a new "
                    "handset, earlier in the first delivery"),
                Col("handsets_24m", "int", doc="handsets the SIM was seen in over the 24 months up to the change date, this one included"),
                Col("tac", "string", max_length=16, doc="type allocation code of the IMEI"),
                Col("brand", "string"),
                Col("model", "string"),
                Col("is_smartphone", "boolean"),
                Col("network_gen", "int", doc="2 to 5 (G)"),
                Col("price", "double", doc="list price of the handset"),
            ),
            keys=("customer_id", "change_date"),
            event_col="change_date",
        ),
        FileSchema(
            kind="optouts",
            source="preference centre",
            doc="Marketing opt-outs and opt-ins, per channel or for all channels.",
            columns=(
                Col("customer_id", "string", max_length=ID_LIMIT),
                Col("event_ts", "timestamp"),
                Col("channel", "string", doc="all, or one outbound channel"),
                Col("action", "string", doc="opt_out or opt_in"),
            ),
            keys=("customer_id", "event_ts", "channel"),
            event_col="event_ts",
        ),
        FileSchema(
            kind="responses",
            source="campaign platform (SMS gateway, WeChat, e-mail, IVR and call-centre dispositions)",
            doc="What became of each exported contact, keyed by the contact_ref the list carried: delivered or failed, "
                "opened or answered, clicked, accepted (with the order it became), declined, opted out, complained. "
                "A day without campaigns delivers a file with its header only.",
            columns=(
                Col("contact_ref", "string", max_length=ID_LIMIT, doc="the key of the list row (gold.cpc_decisions.contact_ref)"),
                Col("customer_id", "string", max_length=ID_LIMIT),
                Col("event_ts", "timestamp"),
                Col("channel", "string", doc="the outbound channel the contact went through"),
                Col("event", "string", doc="delivered, failed, opened, clicked, accepted, declined, opted_out, complained"),
                Col("order_id", "string", max_length=ID_LIMIT, nullable=True, doc="accepted: the order in the orders file it became"),
            ),
            keys=("contact_ref", "event"),
            event_col="event_ts",
        ),
    )
}

# Ingest order: the CRM first, so that other files' customers can be checked against it.
FILE_ORDER = ("crm_profile", "billing", "usage", "contacts", "complaints", "orders", "devices", "optouts", "responses")


@dataclass(frozen=True)
class Table:
    """A Delta table the pipeline writes: its name, grain and partitioning."""

    name: str
    grain: str
    partition_by: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    doc: str = ""
    columns: tuple[Col, ...] = field(default_factory=tuple)
    # Where the columns after ``columns`` come from when the table has more than it declares here: empty for a
    # table whose columns are all declared (tests/test_contracts.py checks them on the sample run).
    open_columns: str = ""


# Lineage columns added to every bronze row.
BRONZE_EXTRA = (
    Col("delivery_date", "date", doc="date of the delivery the row came in"),
    Col("_source_file", "string", doc="landing file name"),
)

QUARANTINE = Table(
    name="bronze.quarantine",
    grain="one row per rejected input row",
    partition_by=("kind", "delivery_date"),
    doc="Rows that failed parsing or validation, as received (raw text of every column), with the reasons.",
    columns=(
        Col("kind", "string"),
        Col("delivery_date", "date"),
        Col("_source_file", "string"),
        Col("raw", "string", doc="the row's fields as received, JSON"),
        Col("reasons", "string", doc="semicolon-separated reasons"),
        Col("line", "bigint", nullable=True, doc="line number in the file as delivered (the header is line 1)"),
    ),
)

LEDGER = Table(
    name="ops.ingest_ledger",
    grain="one row per delivered file",
    partition_by=("delivery_date",),
    keys=("kind", "delivery_date", "file"),
    doc="What came in and where it went, one row per file in the landing folder (known kinds, and files of no known "
        "kind or second copies, kind 'unrecognised'): rows received = rows accepted + rows quarantined, and the "
        "quarantined rows are in bronze.quarantine.",
    columns=(
        Col("kind", "string"),
        Col("delivery_date", "date"),
        Col("file", "string"),
        Col("md5", "string", nullable=True),
        Col("status", "string", doc="accepted, rejected, or unrecognised (a file of no known kind, or a second copy)"),
        Col("reason", "string", nullable=True),
        Col("rows_received", "bigint"),
        Col("rows_accepted", "bigint"),
        Col("rows_quarantined", "bigint"),
        Col("expectations_evaluated", "int"),
        Col("expectations_failed", "int"),
        Col("validation", "string", nullable=True, doc="Great Expectations result summary, JSON"),
        Col("rows_declared", "bigint", nullable=True, doc="the row count its control file states (null without one)"),
        Col("notes", "string", nullable=True, doc="what was handled and how, e.g. a byte-order mark removed, blank lines "
            "skipped, a volume outside the warning band"),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        *(
            Table(
                name=f"bronze.{f.kind}",
                grain=f"one row per {' + '.join(f.keys)} per delivery",
                partition_by=("delivery_date",),
                keys=("delivery_date", *f.keys),
                doc=f.doc,
                columns=f.columns + BRONZE_EXTRA,
            )
            for f in FILES.values()
        ),
        QUARANTINE,
        LEDGER,
        Table(
            name="silver.customer_day",
            grain="one row per customer per day with any activity",
            partition_by=("day",),
            keys=("customer_id", "day"),
            doc="Daily aggregates of usage, billing, contacts, complaints, orders and devices: tag windows sum these, never raw history.",
            columns=(Col("customer_id", "string"), Col("day", "date")),
            open_columns="one column per daily measure of jobs/stages/conform.py MEASURES (bigint counts, double sums)",
        ),
        Table(
            name="silver.tag_state",
            grain="one row per customer with a daily row in the longest tag window per state date",
            partition_by=("state_date",),
            keys=("customer_id", "state_date"),
            doc="The tags stage's incremental window state (docs/incremental-tags.md): per customer, each stored "
                "window's sum in whole 1/10,000 units, days-with counts, last-seen dates, the last row's date and "
                "balance; one complete state per day, the next night steps from it.",
            columns=(Col("customer_id", "string"), Col("state_date", "date")),
            open_columns="one column per state column of the catalogue's plan (jobs/stages/tags/incremental.py "
                         "Plan.types: u_* bigint, n_* int, seen_* date, last_day date, balance double)",
        ),
        Table(
            name="gold.customer_tags",
            grain="one row per customer per snapshot date",
            partition_by=("snapshot_date",),
            keys=("customer_id", "snapshot_date"),
            doc="The wide tag table: one column per tag of the catalogue (conf/tags.yaml).",
            columns=(Col("customer_id", "string"), Col("snapshot_date", "date"), Col("msisdn_hash", "string")),
            open_columns="one column per tag of conf/tags.yaml, in catalogue order, of the tag's type",
        ),
        Table(
            name="gold.tag_catalogue",
            grain="one row per tag",
            keys=("tag_id",),
            doc="The catalogue as data: names, family, type, definition, owner, version.",
            columns=(
            Col("tag_id", "string"), Col("name_en", "string"), Col("name_zh", "string"), Col("family", "string"),
            Col("kind", "string"), Col("value_type", "string"), Col("grain", "string"), Col("definition", "string"),
            Col("description", "string"), Col("owner", "string"), Col("version", "int"), Col("empty_rule", "string"),
            Col("default_value", "string"),
            ),
        ),
        Table(
            name="gold.tag_stats",
            grain="one row per tag value per snapshot date",
            partition_by=("snapshot_date",),
            keys=("snapshot_date", "tag_id", "value"),
            doc="Share of customers per tag value, change against the previous snapshot, drift flag.",
            columns=(
            Col("snapshot_date", "date"), Col("tag_id", "string"), Col("family", "string"), Col("value", "string"),
            Col("customers", "bigint"), Col("share", "double"), Col("mean", "double"), Col("prev_share", "double"),
            Col("share_change", "double"), Col("drift", "boolean"),
            ),
        ),
        Table(
            name="gold.customer_segment",
            grain="one row per customer per snapshot date",
            partition_by=("snapshot_date",),
            keys=("customer_id", "snapshot_date"),
            doc="Lifecycle stage and service tier (with the tier's service standards).",
            columns=(
            Col("customer_id", "string"), Col("snapshot_date", "date"), Col("lifecycle_stage", "string"),
            Col("service_tier", "string"), Col("tier_priority", "int"), Col("answer_rate", "double"),
            Col("first_contact_resolution", "double"), Col("complaint_deadline_h", "int"),
            Col("first_channels", "string"), Col("marketing_allowed", "boolean"),
            ),
        ),
        Table(
            name="gold.propensity",
            grain="one row per customer per model per snapshot date",
            partition_by=("snapshot_date",),
            keys=("customer_id", "snapshot_date", "model"),
            doc="Propensity scores of the models current on the date: probability, decile, band (the model's tag, "
                "e.g. churn_risk_band) and the top contributing features (reason codes).",
            columns=(
            Col("customer_id", "string"), Col("snapshot_date", "date"), Col("model", "string"),
            Col("model_version", "string"), Col("probability", "double"), Col("decile", "int"), Col("band", "string"),
            Col("reason_features", "array<string>"), Col("reason_values", "array<double>"),
            Col("reason_contributions", "array<double>"),
            ),
        ),
        Table(
            name="gold.uplift",
            grain="one row per customer per product family with an uplift model per snapshot date",
            partition_by=("snapshot_date",),
            keys=("customer_id", "snapshot_date", "category"),
            doc="The uplift models current on the date (one per product family, trained weekly from gold.campaign_outcomes: "
                "exploration contacts against the campaigns' holdouts): tau, the predicted change in the probability of "
                "buying the offered product within the evaluation window when contacted (the training rows' outcome: "
                "gold.campaign_outcomes converted, an order of the recorded offer's product; negative: the contact harms). "
                "The CPC decision's expected value of an active offer of the family is tau x value - cost; rule harmed "
                "drops tau < -harm_margin (docs/models.md, \"Uplift models\"). The model learns the effect of being in the "
                "exploration arm (intent-to-treat); tau is that / the arm's contact rate (the model's meta). Empty for a "
                "family in cold start.",
            columns=(
            Col("customer_id", "string"), Col("snapshot_date", "date"), Col("category", "string", doc="the product family"),
            Col("model_version", "string"), Col("tau", "double"),
            ),
        ),
        Table(
            name="gold.cpc_offers",
            grain="one row per customer per offer rank per snapshot date",
            partition_by=("snapshot_date",),
            keys=("customer_id", "snapshot_date", "rank"),
            doc="Each customer's best offers (one per product, on its best channel) among the candidates the contact "
                "policy let through, ranked by expected value, with the three fits, reasons and what was decided.",
            columns=(
            Col("customer_id", "string"), Col("snapshot_date", "date"), Col("rank", "int"), Col("campaign_id", "string"),
            Col("product_id", "string"), Col("category", "string"), Col("channel", "string"),
            Col("channel_kind", "string"), Col("expected_value", "double"), Col("fit_customer_product", "double"),
            Col("fit_product_channel", "double"), Col("fit_customer_channel", "double"), Col("fit_source", "string"),
            Col("lifecycle_stage", "string"), Col("service_tier", "string"), Col("decision", "string"),
            Col("reasons", "string"),
            ),
        ),
        Table(
            name="gold.cpc_decisions",
            grain="one row per contact, placement, holdout, global-holdout or not-chosen record per snapshot date",
            partition_by=("snapshot_date",),
            keys=("snapshot_date", "customer_id", "campaign_id", "product_id", "channel"),
            doc="What the CPC decision did: active contacts (one a customer a day, within capacity), passive placements, "
                "and, never acted on, once per customer and campaign with the offer they would have had first: the holdout "
                "(control group) members (outcome holdout: the campaign's; global_holdout: held out of every campaign, "
                "conf/policy.yaml) and the eligible not chosen (outcome not_chosen: past both holdouts, neither contacted "
                "nor placed by the campaign, lost to the value rules, one-a-day or capacity); fits, expected value, reasons, contact_ref "
                "(the key responses come back with) and run_id (ops.cpc_runs: input and model versions); active_eligible: the "
                "(customer, campaign) had an active candidate past the eligibility rules; explored: the "
                "(customer, campaign) is in the campaign's exploration bucket, the customer outside the global holdout "
                "(conf/policy.yaml exploration: the uplift models' random treated arm, intent-to-treat; reasons start with "
                "'exploration;' on the candidate that had the exploration priority, contacted whatever the ranking within "
                "exploration_capacity_share of the channel's capacity). Only contact and placement rows are exported or "
                "count as contacts.",
            columns=(
            Col("snapshot_date", "date"), Col("customer_id", "string"), Col("campaign_id", "string"),
            Col("campaign_kind", "string"), Col("product_id", "string"), Col("category", "string"),
            Col("offer_name", "string"), Col("price", "double"), Col("channel", "string"), Col("channel_kind", "string"),
            Col("outcome", "string"), Col("expected_value", "double"), Col("fit_customer_product", "double"),
            Col("fit_product_channel", "double"), Col("fit_customer_channel", "double"), Col("fit_source", "string"),
            Col("cost", "double"), Col("value", "double"), Col("lifecycle_stage", "string"),
            Col("service_tier", "string"), Col("reasons", "string"), Col("contact_ref", "string"),
            Col("run_id", "string"), Col("explored", "boolean", nullable=True, doc="null on rows written before the column existed"),
            Col("active_eligible", "boolean", nullable=True,
                doc="the (customer, campaign) had an active candidate past the eligibility rules (1-11, before both "
                    "holdouts) that day: it could have been contacted, whichever bucket it is in; the same on every row "
                    "of the pair; null on rows written before the column existed"),
            ),
        ),
        Table(
            name="gold.cpc_funnel",
            grain="one row per grain x campaign x channel x step per snapshot date",
            partition_by=("snapshot_date",),
            keys=("snapshot_date", "grain", "campaign_id", "channel", "step"),
            doc="Which policy rule removed how many candidates (grain candidate, per channel) and customers (grain customer: "
                "the step where a customer's last candidate for the campaign went), down to contact and placement.",
            columns=(
            Col("snapshot_date", "date"), Col("grain", "string"), Col("campaign_id", "string"), Col("channel", "string"),
            Col("step_no", "int"), Col("step", "string"), Col("count", "bigint"),
            ),
        ),
        Table(
            name="gold.fit_product_channel",
            grain="one row per product x channel that carries it per snapshot date",
            partition_by=("snapshot_date",),
            keys=("snapshot_date", "product_id", "channel"),
            doc="The product-channel fit and its components: prior, success from order history, cost, effort, commission, "
                "authentication (weights in conf/channels.yaml).",
            columns=(
            Col("snapshot_date", "date"), Col("product_id", "string"), Col("channel", "string"), Col("fit", "double"),
            Col("prior", "double"), Col("success", "double"), Col("cost", "double"), Col("effort", "double"),
            Col("commission", "double"), Col("authentication", "double"), Col("orders", "bigint"),
            Col("contacts", "bigint"), Col("success_from_history", "boolean"),
            ),
        ),
        Table(
            name="gold.campaign_outcomes",
            grain="one row per decision (contact, placement, holdout or global-holdout member, eligible not chosen) per decision date",
            partition_by=("snapshot_date",),
            keys=("snapshot_date", "contact_ref"),
            doc="What became of each decision: the responses its contact_ref came back with, whether the customer ordered "
                "the offered product within the attribution window (holdout members and the not chosen too: "
                "intent-to-treat), revenue, cost, group (treated: contacts and placements; holdout, not_chosen, "
                "global_holdout), whether the window has passed (matured), the decision's exploration flag (explored) and "
                "active_eligible: the uplift models' training rows are the exploration pairs with active_eligible, contacted "
                "or not (intent-to-treat), against the holdout pairs with it. Rebuilt nightly for the last lookback_days "
                "decision dates.",
            columns=(
            Col("snapshot_date", "date"), Col("contact_ref", "string"), Col("customer_id", "string"),
            Col("campaign_id", "string"), Col("campaign_kind", "string"), Col("product_id", "string"),
            Col("category", "string"), Col("channel", "string"), Col("channel_kind", "string"),
            Col("service_tier", "string"), Col("lifecycle_stage", "string"), Col("expected_value", "double"),
            Col("group", "string"), Col("outcome", "string"), Col("cost", "double"), Col("delivered", "boolean"),
            Col("failed", "boolean"), Col("opened", "boolean"), Col("clicked", "boolean"), Col("accepted", "boolean"),
            Col("declined", "boolean"), Col("opted_out", "boolean"), Col("complained", "boolean"),
            Col("converted", "boolean"), Col("converted_on", "date"), Col("revenue", "double"),
            Col("days_observed", "int"), Col("matured", "boolean"),
            Col("explored", "boolean", nullable=True, doc="null on rows written before the column existed"),
            Col("active_eligible", "boolean", nullable=True,
                doc="the decision's gold.cpc_decisions active_eligible; null on rows written before it existed"),
            Col("closed", "boolean", nullable=True,
                doc="the customer's line has a closed record (bronze.crm_profile) after the decision date, within the "
                    "window and up to the run date, whatever the cause; null on rows written before it existed"),
            ),
        ),
        Table(
            name="gold.campaign_eval",
            grain="one row per cell of the cube campaign x channel x product x service tier per evaluation date",
            partition_by=("eval_date",),
            keys=("eval_date", "level", "campaign_id", "channel", "product_id", "service_tier"),
            doc="Campaign results as of a date ('*' = all; level names the dimensions kept): contacts, placements, "
                "responses, conversions, revenue, cost, return, ROI; the naive reading, treated against the campaign's "
                "holdout: conversion rates, absolute lift with its 95% confidence interval, relative lift, incremental "
                "conversions (lift x treated); and the three-way reading (docs/evaluation.md), each with its 95% interval: "
                "not-chosen and global-holdout counts, intent-to-treat lift of the eligible (treated + not chosen) over "
                "the holdout, treated share, the contact's effect on the treated (ITT / treated share), selection gap "
                "(naive lift - effect), incremental conversions and value (revenue) at that scale, and the programme's "
                "lift (every decision outside the global holdout against the global holdout's); the same reading of "
                "line closures within the window (closures per group, the contact's effect on closing, incremental "
                "closures, the programme's closure lift: docs/evaluation.md \"Closures\").",
            columns=(
            Col("eval_date", "date"), Col("level", "string"), Col("campaign_id", "string"), Col("channel", "string"),
            Col("product_id", "string"), Col("service_tier", "string"), Col("contacts", "bigint"),
            Col("placements", "bigint"), Col("delivered", "bigint"), Col("failed", "bigint"), Col("opened", "bigint"),
            Col("clicked", "bigint"), Col("accepted", "bigint"), Col("declined", "bigint"), Col("opted_out", "bigint"),
            Col("complained", "bigint"), Col("conversions", "bigint"), Col("revenue", "double"), Col("cost", "double"),
            Col("return", "double"), Col("roi", "double"), Col("treated", "bigint"), Col("holdout", "bigint"),
            Col("holdout_conversions", "bigint"), Col("matured_share", "double"), Col("rate_treated", "double"),
            Col("rate_control", "double"), Col("lift", "double"), Col("lift_low", "double"), Col("lift_high", "double"),
            Col("relative_lift", "double"), Col("incremental_conversions", "double"), Col("significant", "boolean"),
            Col("not_chosen", "bigint"), Col("not_chosen_conversions", "bigint"), Col("global_holdout", "bigint"),
            Col("global_holdout_conversions", "bigint"), Col("treated_share", "double"), Col("itt_lift", "double"),
            Col("itt_lift_low", "double"), Col("itt_lift_high", "double"), Col("effect_on_treated", "double"),
            Col("effect_low", "double"), Col("effect_high", "double"), Col("selection_gap", "double"),
            Col("incremental_conversions_itt", "double"), Col("incremental_conversions_itt_low", "double"),
            Col("incremental_conversions_itt_high", "double"), Col("incremental_value", "double"),
            Col("incremental_value_low", "double"), Col("incremental_value_high", "double"),
            Col("programme_lift", "double"), Col("programme_lift_low", "double"), Col("programme_lift_high", "double"),
            *(Col(c, "bigint", nullable=True, doc="null on rows written before closures were measured")
              for c in ("closures", "holdout_closures", "not_chosen_closures", "global_holdout_closures")),
            *(Col(c, "double", nullable=True) for c in ("closure_effect", "closure_effect_low", "closure_effect_high",
                                                         "incremental_closures", "incremental_closures_low",
                                                         "incremental_closures_high", "programme_closure_lift",
                                                         "programme_closure_lift_low", "programme_closure_lift_high")),
            ),
        ),
        Table(
            name="gold.trial_funnel",
            grain="one row per trial started in the last 60 days per snapshot date",
            partition_by=("snapshot_date",),
            keys=("snapshot_date", "customer_id", "product_id"),
            doc="The trial funnel (ARC): each trial's start, the trial campaigns that reached it (manual, day-15 feedback, "
                "low-usage nudge, expiry SMS and call), how it ended (converted, expired, cancelled, open) and through "
                "which channel it converted, and for a non-converter the next step (price-sensitive: cheaper bundle).",
            columns=(
            Col("snapshot_date", "date"), Col("customer_id", "string"), Col("product_id", "string"),
            Col("started_on", "date"), Col("trial_day", "int"), Col("manual", "boolean"), Col("feedback", "boolean"),
            Col("low_usage_nudge", "boolean"), Col("expiry_sms", "boolean"), Col("expiry_call", "boolean"),
            Col("in_holdout", "boolean"), Col("status", "string"), Col("ended_on", "date"),
            Col("converted_via", "string"), Col("price_sensitive", "boolean"), Col("next_step", "string"),
            ),
        ),
        Table(
            name="ops.cpc_runs",
            grain="one row per CPC decision run per snapshot date (the latest)",
            partition_by=("snapshot_date",),
            keys=("snapshot_date",),
            doc="What a day's decisions were made from: Delta versions of the input tables, propensity model versions, "
                "SHA-256 of the business configuration, the policy and the campaigns active.",
            columns=(
            Col("snapshot_date", "date"), Col("run_id", "string"), Col("input_versions", "string"),
            Col("model_versions", "string"), Col("config_sha256", "string"), Col("policy", "string"),
            Col("campaigns", "string"),
            ),
        ),
        Table(
            name="ops.closed_days",
            grain="one row per file kind per closed day",
            partition_by=("run_date",),
            keys=("run_date", "kind"),
            doc="The deliveries (MD5) a day's published lists were made from; a changed delivery needs `cpc reopen`.",
            columns=(
            Col("run_date", "date"), Col("kind", "string"), Col("md5", "string"),
            ),
        ),
        Table(
            name="ops.run_log",
            grain="one row per stage finished (append-only)",
            partition_by=("run_date",),
            doc="Each stage of each date that finished, and when: backfills resume from it.",
            columns=(
            Col("run_date", "date"), Col("stage", "string"), Col("status", "string"), Col("finished_at", "timestamp"),
            ),
        ),
        Table(
            name="ops.tag_state_log",
            grain="one row per tag state date (the latest build)",
            partition_by=("state_date",),
            keys=("state_date",),
            doc="How each state of silver.tag_state was built: bootstrap (from the history), step (from the day "
                "before), rebuild (a day built again: a rewritten silver day, a missed night), full (`cpc tags "
                "--full`); the silver.customer_day version read, the catalogue plan's fingerprint, and whether the "
                "state may still be stepped from (valid: false after `cpc reopen` or a failed weekly check).",
            columns=(
            Col("state_date", "date"), Col("method", "string"), Col("silver_version", "bigint"), Col("plan", "string"),
            Col("rows", "bigint"), Col("seconds", "double"), Col("built_at", "timestamp"), Col("valid", "boolean"),
            ),
        ),
        Table(
            name="ops.evaluate_log",
            grain="one row per evaluation date (the latest build)",
            partition_by=("eval_date",),
            keys=("eval_date",),
            doc="How each night's evaluate built gold.campaign_outcomes: full (every decision date of the lookback) or "
                "step (only the dates whose outcome can have changed since the evaluation before: the window still "
                "open, decisions rewritten, a response, order or line closure delivered since that names them; "
                "docs/evaluation.md, \"Each night rebuilds only what can change\"), why, the dates rebuilt, and the "
                "Delta versions of the tables read and written, which the next night's step starts from.",
            columns=(
            Col("eval_date", "date"), Col("method", "string"), Col("reason", "string"), Col("dates_rebuilt", "int"),
            Col("decisions_version", "bigint"), Col("responses_version", "bigint"), Col("orders_version", "bigint"),
            Col("outcomes_version", "bigint"), Col("window_days", "int"), Col("lookback_days", "int"),
            Col("seconds", "double"), Col("built_at", "timestamp"),
            Col("logic", "string", doc="the fingerprint of the outcomes' code (jobs.stages.evaluate.logic): another one rebuilds every date"),
            Col("table_ids", "string", doc="JSON: the Delta table id of each table read and of gold.campaign_outcomes (a re-created table rebuilds every date)"),
            Col("crm_version", "bigint", nullable=True,
                doc="bronze.crm_profile's version read (the closures); null on rows written before it was an input"),
            ),
        ),
        Table(
            name="ops.tag_state_checks",
            grain="one row per weekly check of the tag state (per run date, the latest)",
            partition_by=("run_date",),
            keys=("run_date",),
            doc="The weekly check of the incremental tag state against the full recompute on a sample of customers: "
                "the state checked, the sample, the differences (0 when equal) and up to 20 of them as JSON.",
            columns=(
            Col("run_date", "date"), Col("state_date", "date"), Col("silver_version", "bigint"), Col("per_mille", "int"),
            Col("customers", "bigint"), Col("columns", "int"), Col("differences", "bigint"), Col("examples", "string"),
            Col("seconds", "double"), Col("checked_at", "timestamp"),
            ),
        ),
        Table(
            name="ops.export_audit",
            grain="one row per list published (append-only; reruns add rows)",
            partition_by=("run_date",),
            doc="Who published what and when: run date, channel, rows, SHA-256, path, publisher, time, Airflow run.",
            columns=(
            Col("run_date", "date"), Col("channel", "string"), Col("rows", "bigint"), Col("sha256", "string"),
            Col("path", "string"), Col("decisions_version", "bigint"), Col("published_by", "string"),
            Col("airflow_run_id", "string"), Col("published_at", "timestamp"),
            ),
        ),
        Table(
            name="ops.export_log",
            grain="one row per exported list",
            partition_by=("run_date",),
            keys=("run_date", "channel"),
            doc="Each published list: channel, rows, checksum, location.",
            columns=(
            Col("run_date", "date"), Col("channel", "string"), Col("rows", "bigint"), Col("sha256", "string"),
            Col("path", "string"), Col("decisions_version", "bigint"),
            ),
        ),
    )
}
