"""The simulated operator's behaviour parameters: ONE table, each with its published source or marked an assumption.

A *profile* is one column of the table: ``easy`` is the operator as simulated before issue 22 (most churners send
the number-portability query when their intent starts, traffic collapses before closure, everyone responds to
contact and nobody is pushed away by it); ``realistic`` (the default of ``make run``, ``make loop`` and the
benchmark) follows the published figures; ``hard`` leaves even fewer traces and more customers a contact harms.

The rule the table serves: a behaviour parameter cites a source or says why it is an assumption, and no
parameter is tuned to let a model or a targeting meet a target (a signal that gives the answer away makes
the measurement worthless). ``python -m simulator params --markdown`` prints the table that docs/simulator.md
holds (a test checks that the document is the table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

PROFILES = ("easy", "realistic", "hard")
DEFAULT_PROFILE = "realistic"

# The published sources the table cites (keys are used in Param.source).
SOURCES = {
    "porting": "MIIT figures as cited in issue 22 and the domain brief: about 9.4M ports by mid-2020 (0.59% of "
               "1.59 billion lines), over 57M by early 2022, roughly 1.5% of lines a year",
    "cxxz": "China's number-portability procedure as cited in issue 22 and the domain brief: the eligibility query "
            "(SMS CXXZ to 10086) comes hours to about a day before the port; the port completes within about an "
            "hour of the authorisation code (SQXZ)",
    "fujian": "Fujian pilot, Nov-Dec 2019, as cited in issue 22 and the domain brief: 41,636 authorisation codes, "
              "34,865 port applications (about 84%)",
    "churn": "Duke/Teradata churn modelling tournament overview, as cited in the domain brief: annual churn in telecom "
             "20-40%; Harvard Business Review, 'The wrong way to reduce churn' (2015, "
             "https://hbr.org/2015/10/the-wrong-way-to-reduce-churn): European mobile churn 21-38% a year",
    "ascarza2016": "Ascarza, Iyengar & Schleicher, 'The perils of proactive churn prevention using plan "
                   "recommendations: evidence from a field experiment', Journal of Marketing Research 53(1), 2016, "
                   "doi:10.1509/jmr.13.0483 (https://papers.ssrn.com/sol3/papers.cfm?abstract_id=2339604): about "
                   "65,000 wireless customers, churn in the three months after the campaign 10.0% among the contacted "
                   "against 6.4% in the control group",
    "ascarza2018": "Ascarza, 'Retention futility: targeting high-risk customers might be ineffective', Journal of "
                   "Marketing Research, 2018 (SSRN 2759170), as cited in issue 22: targeting by sensitivity to the "
                   "intervention beat targeting by churn risk",
    "criteo": "Diemert et al., 'A large scale benchmark for uplift modeling' (Criteo AI Lab, 2018; extended as arXiv "
              "2111.10106, https://arxiv.org/abs/2111.10106): about 14M rows from randomised trials; as cited in issue 22 "
              "and the brief (arXiv 2604.06123), the top 20% by predicted uplift held 77.7% of the incremental "
              "conversions (3.9x random) and only about 2% of customers were confidently persuadable",
}


@dataclass(frozen=True)
class Param:
    """One behaviour parameter: its value in each profile, and where the value comes from."""

    name: str
    meaning: str
    unit: str
    values: dict[str, Any]
    source: str | None = None  # a key of SOURCES, with an optional remark after ": "
    assumption: str | None = None  # why, when there is no source

    def __post_init__(self) -> None:
        if set(self.values) != set(PROFILES):
            raise ValueError(f"parameter {self.name}: values for {sorted(self.values)}, expected {list(PROFILES)}")
        if bool(self.source) == bool(self.assumption):
            raise ValueError(f"parameter {self.name}: give exactly one of a source or an assumption")
        if self.source and self.source.split(":", 1)[0] not in SOURCES:
            raise ValueError(f"parameter {self.name}: unknown source {self.source!r}; known: {', '.join(SOURCES)}")

    @property
    def basis(self) -> str:
        if self.assumption:
            return f"assumption: {self.assumption}"
        key, _, remark = self.source.partition(":")
        return f"source [{key}]" + (f":{remark}" if remark else "")


P = Param
# The table. Shares and probabilities are in [0, 1]; (a, b) is an inclusive range drawn uniformly.
TABLE: tuple[Param, ...] = (
    # --- churn: how much, by which path, and the traces it leaves -----------------------------------------------
    P("annual_churn_rate", "Population churn a year the per-customer churn risk is scaled to (easy: none, the risk "
      "score is itself the probability of churning within the simulated window)", "share a year",
      {"easy": None, "realistic": 0.25, "hard": 0.25}, source="churn: 25%, inside the 20-40% range"),
    P("contract_end_hazard_multiplier", "Churn hazard multiplier for a customer whose contract ends within the "
      "simulated window (or within 25 days after it)", "x", {"easy": 1.0, "realistic": 2.0, "hard": 2.0},
      assumption="the brief's lifecycle table puts contract customers in decline 1-3 months before contract end; no "
      "published size for the effect"),
    P("contract_end_path_share", "Share of churners whose contract ends in the window (or within 25 days after it) "
      "who leave at contract end rather than at a random time", "share", {"easy": 0.0, "realistic": 0.6, "hard": 0.6},
      assumption="contract end is when leaving costs nothing; no published share"),
    P("contract_end_grace_days", "Days after the contract end on which a contract-end churner's line closes",
      "days (range)", {"easy": None, "realistic": (0, 14), "hard": (0, 14)},
      assumption="customers leave soon after the commitment lapses; no published distribution"),
    P("churn_lead_days", "Days from the start of a churner's intent (when any decline starts) to the line's closure",
      "days (range)", {"easy": (12, 25), "realistic": (12, 25), "hard": (12, 25)},
      assumption="kept from the original simulator; no published distribution"),
    P("port_share_of_churners", "Share of churners who leave by porting their number (and so send the CXXZ "
      "eligibility query); the rest leave silently", "share", {"easy": 0.9, "realistic": 0.06, "hard": 0.04},
      source="porting: ~1.5% of lines port a year against 20-40% annual churn (source [churn]) gives 4-7.5% of "
      "churners; realistic 1.5/25, hard 1.5/40 (easy keeps the original 90%)"),
    P("port_query_timing", "When a porting churner sends the CXXZ query: 'intent_start' = within two days of the "
      "start of the intent (11-27 days before closure, the original simulator); 'before_port' = hours before the "
      "port, which completes on the line's last day", "mode",
      {"easy": "intent_start", "realistic": "before_port", "hard": "before_port"}, source="cxxz"),
    P("port_query_lead_hours", "Hours between the CXXZ query and the port (the port happens in working hours of the "
      "line's last active day)", "hours (range)", {"easy": None, "realistic": (1, 24), "hard": (1, 24)}, source="cxxz"),
    P("port_code_share_ported", "Share of customers who ask (query and authorisation code) and then port; the others "
      "ask and stay (easy: every asking churner leaves, no one abandons)", "share",
      {"easy": 1.0, "realistic": 0.84, "hard": 0.84}, source="fujian"),
    P("curious_query_daily", "Daily probability that any customer sends the CXXZ query out of curiosity, without "
      "porting", "per customer-day", {"easy": 0.0002, "realistic": 0.0002, "hard": 0.0004},
      assumption="kept from the original simulator (about 7% of customers a year); hard doubles it; no published "
                 "query volume found"),
    P("decline_depth_mean", "Mean depth of a churner's usage decline before closure (activity falls to 1 - depth)",
      "share of usual activity", {"easy": 0.95, "realistic": 0.3, "hard": 0.15},
      assumption="most churn (prepaid lapse, second SIMs dropped) leaves no clear trace (brief); weak on purpose, "
                 "no published size"),
    P("decline_depth_sd", "Spread of the decline depth between churners (normal, clipped to [0, 0.95]): some do not "
      "decline at all", "share of usual activity", {"easy": 0.0, "realistic": 0.25, "hard": 0.3},
      assumption="noisy on purpose; no published distribution"),
    P("decline_per_day", "How fast the decline reaches its depth, from the start of the intent", "share a day",
      {"easy": 0.1, "realistic": 0.03, "hard": 0.02}, assumption="easy keeps the original 10-day collapse; no "
                                                                 "published slope"),
    P("churner_inbound_contact_uplift", "Extra inbound contacts (hotline, app ...) of a churner after the intent "
      "starts", "relative increase", {"easy": 0.5, "realistic": 0.3, "hard": 0.15},
      assumption="dissatisfied customers call more; no published size"),
    P("churner_accept_factor", "Acceptance of an offer by a churner after the intent starts, relative to before",
      "x", {"easy": 0.2, "realistic": 0.2, "hard": 0.2}, assumption="kept from the original simulator"),
    # --- response types: who a contact changes ---------------------------------------------------------------
    P("share_persuadable", "Share of customer x product-family pairs that buy only if contacted (easy: everyone "
      "responds to contact and also buys unprompted, the original simulator)", "share",
      {"easy": 1.0, "realistic": 0.12, "hard": 0.06},
      source="criteo: uplift is concentrated in few customers; the exact share is an assumption (realistic about "
      "the top-20%-holds-78% concentration, hard nearer the 2% confidently persuadable)"),
    P("share_sure_thing", "Share of customer x product-family pairs that buy anyway, contacted or not (their "
      "purchases are ordinary orders in the orders file; a contact changes nothing)", "share",
      {"easy": 0.0, "realistic": 0.15, "hard": 0.15},
      assumption="no published share for telecom offers; chosen so that high propensity is not high uplift"),
    P("share_lost_cause", "Share of customer x product-family pairs that never buy", "share",
      {"easy": 0.0, "realistic": 0.73, "hard": 0.79}, assumption="the rest of the pairs (1 - persuadable - sure thing)"),
    P("organic_buyers", "Who buys unprompted: 'everyone' (the original simulator: every customer buys from their "
      "affinity and also responds to contact) or 'sure_things'", "mode",
      {"easy": "everyone", "realistic": "sure_things", "hard": "sure_things"},
      assumption="a purchase that happens anyway is what a sure thing is; easy keeps the original"),
    P("organic_daily_rate", "Daily probability of buying a product unprompted, per unit of affinity (easy: by "
      "everyone; realistic/hard: by sure things only)", "per customer-product-day, x affinity",
      {"easy": 0.004, "realistic": 0.027, "hard": 0.027},
      assumption="keeps the original organic volume (0.004 x affinity for everyone) now that only the 15% sure "
                 "things buy unprompted (0.004 / 0.15)"),
    P("share_sleeping_dog", "Share of customers a contact pushes towards leaving or opting out (they never buy from "
      "a contact)", "share", {"easy": 0.0, "realistic": 0.10, "hard": 0.15},
      source="ascarza2016: contact raised churn from 6.4% to 10.0% (+3.6 points); the split into a share of sleeping "
      "dogs x their reaction (10% x 35% = 3.5 points) is an assumption; see also [ascarza2018]"),
    P("dog_contact_churn_prob", "Probability that a delivered offer of a family in dog_contact_families makes a "
      "sleeping dog leave (recorded in truth/contact_churn.parquet with its day)", "per contact",
      {"easy": 0.0, "realistic": 0.35, "hard": 0.5},
      source="ascarza2016: with share_sleeping_dog gives the +3.6 points of churn among the contacted; the study "
      "measured one campaign, so that each further delivered contact draws again (a dog delivered n contacts "
      "leaves with 1 - (1 - p)^n) is an assumption, the harsher reading for a list maker that contacts a customer again"),
    P("dog_contact_families", "Product families (conf/products.yaml categories) whose offer provokes a sleeping "
      "dog's closure with dog_contact_churn_prob; 'all': every contact, service messages included", "families",
      {"easy": "all", "realistic": ("plan", "retention"), "hard": "all"},
      source="ascarza2016: the contact measured was a plan recommendation in a proactive churn-prevention "
      "campaign (here: plan upgrades and contract renewal offers); docs/contact-harm-evidence.md found no study "
      "that measures closures caused by other promotional offers; hard keeps every contact at the full rate"),
    P("dog_other_contact_churn_prob", "Probability that a delivered contact of any other family (other offers, "
      "service messages) makes a sleeping dog leave", "per contact", {"easy": 0.0, "realistic": 0.002, "hard": 0.5},
      assumption="no published figure (docs/contact-harm-evidence.md): a tenth of a sleeping dog's opt-out "
      "probability after a contact (0.2% x dog_optout_multiplier = 2%), as closing a line costs a customer far "
      "more than replying to opt out; published opt-outs run 0.1-1% per message, and an experiment with e-mails "
      "(Wang, Lu & Shi 2022) lowered churn on average; hard: every contact at dog_contact_churn_prob"),
    P("dog_churn_lag_days", "Days from a contact to the closure it provokes", "days (range)",
      {"easy": None, "realistic": (7, 60), "hard": (7, 60)},
      source="ascarza2016: churn measured over the three months after the campaign; the spread is an assumption"),
    P("dog_optout_multiplier", "Opt-out probability of a contacted sleeping dog, relative to other customers",
      "x", {"easy": 1.0, "realistic": 10.0, "hard": 15.0},
      assumption="a contact that annoys shows as an opt-out; no published size"),
    # --- contact fatigue -------------------------------------------------------------------------------------
    P("fatigue_window_days", "Days back over which earlier outbound contacts count for fatigue", "days",
      {"easy": 30, "realistic": 30, "hard": 30}, assumption="a month, the usual horizon of contact policies"),
    P("fatigue_response_decay", "Open and accept probability x exp(-decay x earlier contacts in the window)",
      "per earlier contact", {"easy": 0.0, "realistic": 0.15, "hard": 0.25},
      assumption="responses fall with repeated contact; no published telecom figure"),
    P("fatigue_optout_growth", "Opt-out probability x (1 + growth x earlier contacts in the window)",
      "per earlier contact", {"easy": 0.0, "realistic": 0.5, "hard": 0.8},
      assumption="opt-outs rise with repeated contact; no published telecom figure"),
    # --- what the headline counts (simulator/headline.py); no effect on the files ---------------------------
    P("lost_customer_months", "What a closure provoked by a contact costs in the closed loop's headline (net "
      "incremental value): this many months of the customer's plan fee (18, 58 or 128 yuan a month by brand, "
      "simulator/generate.py PLANS), against a conversion's value (conf/products.yaml: one month's margin of an "
      "acceptance)", "months", {"easy": 12, "realistic": 12, "hard": 12},
      assumption="a year of the plan fee: between the one month a conversion's value stands for and the about four "
                 "years a customer stays at 25% annual churn, the fee being revenue, not margin; no published figure. "
                 "The headline also gives the expected closures, to revalue at another horizon"),
)
del P

_BY_NAME = {p.name: p for p in TABLE}
if len(_BY_NAME) != len(TABLE):  # pragma: no cover - a programming error
    raise ValueError("duplicate parameter names in simulator/profiles.py")


@dataclass(frozen=True)
class Profile:
    """The parameters of one profile: ``profile.port_share_of_churners`` etc."""

    name: str
    values: dict[str, Any] = field(repr=False)

    def __getattr__(self, key: str) -> Any:
        values = object.__getattribute__(self, "values")
        if key in values:
            return values[key]
        raise AttributeError(f"no simulator parameter {key!r}")


def check_name(name: str) -> str:
    if name not in PROFILES:
        raise ValueError(f"unknown simulator profile {name!r}; known profiles: {', '.join(PROFILES)}")
    return name


def profile(name: str = DEFAULT_PROFILE) -> Profile:
    """The named profile; an unknown name is an error that lists the known ones."""
    check_name(name)
    values = {p.name: p.values[name] for p in TABLE}
    shares = values["share_persuadable"] + values["share_sure_thing"] + values["share_lost_cause"]
    if name != "easy" and abs(shares - 1) > 1e-9:
        raise ValueError(f"profile {name}: persuadable + sure thing + lost cause shares add up to {shares}, not 1")
    return Profile(name, values)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple) and all(isinstance(x, str) for x in v):
        return ", ".join(v)
    if isinstance(v, tuple):
        return f"{v[0]}-{v[1]}"
    return str(v)


def markdown() -> str:
    """The table as markdown (what docs/simulator.md holds between its markers)."""
    rows = [[f"`{p.name}`", p.meaning, p.unit, *(_cell(p.values[k]) for k in PROFILES), p.basis] for p in TABLE]
    table = tabulate(rows, ["parameter", "meaning", "unit", *PROFILES, "source or assumption"], tablefmt="pipe",
                     disable_numparse=True)
    sources = "\n".join(f"- [{k}] {v}" for k, v in SOURCES.items())
    return f"{table}\n\nSources:\n\n{sources}\n"
