"""`python -m simulator`: the simulated operator's command line (not part of the production `cpc`).

- ``simulate``: an operator's daily files and the hidden truth, into the environment's landing folder;
- ``respond``: the campaign platform's responses on a date to the lists published before it;
- ``sample-run``: ``make run``'s steps 2-5 (history, training DAG, warm-up, nightly DAG) in one process
  (``simulator/sample_run.py``);
- ``warmup``: ``make run``'s warm-up: the nightly runs of the ``--days`` days before the sample's run date
  (default: its ``warmup_days``), each after the campaign platform's responses, then the run date's responses, so
  that the run date's campaign report has outcomes (``simulator/warmup.py``);
- ``loop``: the closed loop over several days in its own root, and its headline (CPC vs blast vs oracle);
- ``loops``: several loops (seeds x profiles, optionally a propensity-ranked arm), then their aggregate headline;
- ``headline``: the aggregate headline of finished loops (no Spark).

Same conventions as ``cpc`` (:func:`jobs.cli.run`): plain log lines, a global ``--debug``, one-line errors, exit
codes 0 ok, 1 error, 2 usage error.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Annotated

import typer

from jobs.cli import DEBUG_HELP, date_option, run
from jobs.platform import logs
from jobs.platform.config import PROJECT_DIR, settings

PROG = "python -m simulator"
PROFILE_HELP = ("The operator's behaviour: easy, realistic or hard (simulator/profiles.py, docs/simulator.md; "
                "default: the sample's 'profile', else realistic).")


def _profile_name(name: str | None, cfg) -> str:
    from simulator.profiles import check_name

    try:
        return check_name(name or str(cfg.sample.get("profile", "realistic")))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from exc

app = typer.Typer(
    name="simulator",
    help="The simulated operator: daily files with a hidden truth, the campaign platform's responses, and the "
         "closed loop with its headline. Settings and storage root come from conf/env/<CPC_ENV>.yaml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global(debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False) -> None:
    """Options before the command apply to every command."""
    logs.setup(debug=debug)


@app.command(help="Generate an operator's daily files and the hidden truth into the landing folder "
                  "(defaults: conf/env/<CPC_ENV>.yaml 'sample').")
def simulate(
    customers: Annotated[int | None, typer.Option(
        "--customers", help="Customers (default: the sample's).", show_default=False)] = None,
    days: Annotated[int | None, typer.Option(
        "--days", help="Delivery days (default: the sample's).", show_default=False)] = None,
    end: Annotated[dt.date | None, date_option("--end", help="Last delivery date (default: the sample's).")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Random seed (default: the sample's).", show_default=False)] = None,
    clean: Annotated[bool, typer.Option("--clean", help="Remove earlier landing files and truth first.")] = False,
    profile: Annotated[str | None, typer.Option("--profile", help=PROFILE_HELP, show_default=False)] = None,
) -> None:
    from simulator.generate import SimSpec, generate

    cfg = settings()
    spec = SimSpec(
        customers=customers or int(cfg.sample["customers"]),
        days=days or int(cfg.sample["days"]),
        end_date=end or cfg.sample_end_date,
        seed=seed if seed is not None else int(cfg.sample["seed"]),
        profile=_profile_name(profile, cfg),
    )
    if clean:
        for d in (cfg.paths.landing, cfg.paths.truth):
            shutil.rmtree(d, ignore_errors=True)
    print(f"simulate: {spec.customers} customers, {spec.days} days {spec.start_date}..{spec.end_date}, "
          f"seed {spec.seed}, profile {spec.profile} -> {cfg.paths.landing}")
    totals = generate(cfg.paths, spec)
    print("simulate: rows " + ", ".join(f"{k} {v}" for k, v in totals.items()))


@app.command(help="Write a date's campaign responses to the lists published before it (run before ingesting "
                  "the date).")
def respond(
    date: Annotated[dt.date, date_option("--date", help="The delivery date the responses arrive on.")],
    profile: Annotated[str | None, typer.Option(
        "--profile", help="Check that the files were simulated with this profile (default: the one they were "
                          "simulated with, truth/simulation.json).", show_default=False)] = None,
) -> None:
    from simulator.generate import SimSpec
    from simulator.responder import respond as answer

    cfg = settings()
    spec = SimSpec.of(cfg.paths)
    if profile is not None and _profile_name(profile, cfg) != spec.profile:
        raise typer.BadParameter(f"the files in {cfg.paths.landing} were simulated with profile {spec.profile!r}, not "
                                 f"{profile!r}; simulate again with --profile {profile}", param_hint="--profile")
    answer(cfg.paths, spec, date)


@app.command(help="make run's warm-up, after the history and the training: the nightly runs of the days before the "
                  "sample's run date (sample.end_date), each after the campaign platform's responses to the earlier "
                  "lists, then the run date's responses, so that the run date's campaign report has outcomes.")
def warmup(
    days: Annotated[int | None, typer.Option(
        "--days", min=0, help="Warm-up days before the run date (default: the sample's warmup_days, else 0; 0 does "
                              "nothing).", show_default=False)] = None,
    no_models: Annotated[bool, typer.Option(
        "--no-models", help="Do not require the history the models' training needs before the first warm-up day (a "
                            "sample too short to train: without models the decisions use the rule-based fits).")] = False,
) -> None:
    from simulator import warmup as warm

    cfg = settings()
    warm.run(int(cfg.sample.get("warmup_days", 0)) if days is None else days, cfg, models=not no_models)


@app.command("sample-run", help="make run's steps 2-5 in one process (one Spark, warmed once): load the history, "
                                 "train with Airflow (the cpc_training DAG by dag.test()), warm up, then the run "
                                 "date's nightly with Airflow (cpc_nightly by dag.test()); after `simulate`.")
def sample_run(
    warmup_days: Annotated[int | None, typer.Option(
        "--warmup-days", min=0, help="Warm-up days before the run date (default: the sample's warmup_days, else 0).",
        show_default=False)] = None,
) -> None:
    from simulator import sample_run as sample

    sample.run(warmup_days)


OUT_HELP = ("Folder of the aggregate headline.json and headline.md (default: bench/results; a copy of the JSON goes to "
            "<storage root>/reports/loop/, which the campaign report shows).")
TRAIN_EVERY_HELP = ("Run the weekly training stage every this many loop days (as of the day before), as the weekly DAG "
                    "would; 0: only the training before the loop, so no uplift model can leave cold start.")


@app.command(help="Closed loop over several days in its own root (emptied first): responses, nightly run, "
                  "evaluation; then the headline, CPC vs blast vs oracle.")
def loop(
    customers: Annotated[int, typer.Option("--customers", help="Simulated customers.")] = 20000,
    history_days: Annotated[int, typer.Option(
        "--history-days", help="Days loaded before the loop (105 let the models train).")] = 105,
    days: Annotated[int, typer.Option("--days", help="Loop days, each a full nightly run.")] = 8,
    no_train: Annotated[bool, typer.Option(
        "--no-train", help="No propensity models: the CPC uses the rule-based fits.")] = False,
    headline_only: Annotated[bool, typer.Option(
        "--headline-only", help="Recompute the CPC / blast / oracle table of a finished loop in --root (no Spark).")]
        = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    root: Annotated[Path | None, typer.Option(
        "--root", help="Storage root, emptied first (default: <storage root>/loop).", show_default=False)] = None,
    profile: Annotated[str | None, typer.Option("--profile", help=PROFILE_HELP, show_default=False)] = None,
    train_every: Annotated[int, typer.Option("--train-every", help=TRAIN_EVERY_HELP, min=0)] = 0,
) -> None:
    from simulator import loop as closed_loop

    cfg = settings()
    root = root or cfg.paths.root / "loop"
    if headline_only:
        _headline_only(root.resolve(), days)
        return
    closed_loop.run(customers, history_days, days, root.resolve(), seed, cfg=cfg, train=not no_train,
                    profile=_profile_name(profile, cfg), train_every=train_every)


def _headline_only(root: Path, days: int) -> None:
    """The headline of a finished loop again, keeping what only the loop knew (time, ranking, retraining) from its
    earlier headline.json."""
    import json

    from jobs.platform.config import Paths
    from simulator.generate import SimSpec
    from simulator.headline import headline

    paths = Paths(root)
    spec = SimSpec.of(paths)
    earlier = paths.reports / "loop" / "headline.json"
    old = json.loads(earlier.read_text()) if earlier.exists() else {}
    meta = {k: old[k] for k in ("seconds", "uplift_rank", "train_every") if k in old}
    meta.update({"customers": spec.customers, "history_days": spec.days - days, "seed": spec.seed, "profile": spec.profile,
                 "models_trained": (root / "models").exists() and any((root / "models").iterdir())})
    headline(paths, spec, spec.dates()[-days:], meta)


def _numbers(text: str, what: str) -> list[str]:
    items = [x for x in text.replace(",", " ").split() if x]
    if not items:
        raise typer.BadParameter(f"give at least one {what}", param_hint=f"--{what}s")
    return items


@app.command(help="Several closed loops in sequence (seeds x profiles, each in <storage root>/loops/<profile>-seed<seed>, "
                  "emptied first; with --propensity-arm the same seed ranked by propensity too), then their aggregate "
                  "headline in --out.")
def loops(
    seeds: Annotated[str, typer.Option("--seeds", help="Random seeds, separated by spaces or commas.")] = "42 43 44",
    profiles: Annotated[str, typer.Option("--profiles", help="Profiles, separated by spaces or commas (easy, realistic, "
                                                             "hard).")] = "realistic",
    customers: Annotated[int, typer.Option("--customers", help="Simulated customers per loop.")] = 20000,
    days: Annotated[int, typer.Option("--days", help="Loop days per loop.")] = 8,
    history_days: Annotated[int, typer.Option("--history-days", help="Days loaded before each loop.")] = 105,
    train_every: Annotated[int, typer.Option("--train-every", help=TRAIN_EVERY_HELP, min=0)] = 0,
    propensity_arm: Annotated[bool, typer.Option(
        "--propensity-arm", help="Run each seed a second time with the uplift ranking off (CPC_UPLIFT_RANK=false), for "
                                 "the uplift vs propensity comparison (doubles the time).")] = False,
    base: Annotated[Path | None, typer.Option(
        "--base", help="Folder of the loops' roots (default: <storage root>/loops).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help=OUT_HELP, show_default=False)] = None,
) -> None:
    import sys
    import time

    from simulator import aggregate

    cfg = settings()
    t0 = time.time()
    names = [_profile_name(p, cfg) for p in _numbers(profiles, "profile")]
    try:
        numbers = [int(x) for x in _numbers(seeds, "seed")]
    except ValueError as exc:
        raise typer.BadParameter(f"seeds are whole numbers: {seeds!r}", param_hint="--seeds") from exc
    roots = aggregate.run_loops(numbers, names, customers, days, history_days, (base or cfg.paths.root / "loops").resolve(),
                                cfg, train_every=train_every, propensity_arm=propensity_arm)
    agg = aggregate.aggregate(roots, [PROG, *sys.argv[1:]], time.time() - t0)
    path = aggregate.write(agg, out or PROJECT_DIR / "bench" / "results", cfg.paths.root)
    print(f"loops: {len(roots)} loops -> {path}\n\n{aggregate.markdown(agg)}")


@app.command(help="The aggregate headline of finished loops (each ROOT's reports/loop/headline.json and uplift "
                  "registry; no Spark): means and 95% intervals over seeds, the targets, uplift vs propensity.")
def headline(
    roots: Annotated[list[Path], typer.Argument(help="Roots of finished loops (e.g. var/loops/*).", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", help=OUT_HELP, show_default=False)] = None,
) -> None:
    import sys

    from simulator import aggregate

    cfg = settings()
    agg = aggregate.aggregate([r.resolve() for r in roots], [PROG, *sys.argv[1:]])
    path = aggregate.write(agg, out or PROJECT_DIR / "bench" / "results", cfg.paths.root)
    print(f"headline: {len(roots)} loops -> {path}\n\n{aggregate.markdown(agg)}")


@app.command(help="The simulator's behaviour parameters per profile, each with its source or assumption "
                  "(docs/simulator.md holds the --markdown output).")
def params(
    markdown: Annotated[bool, typer.Option("--markdown", help="The table as markdown, as docs/simulator.md holds it.")]
        = False,
) -> None:
    from simulator import profiles

    if markdown:
        print(profiles.markdown(), end="")
        return
    for p in profiles.TABLE:
        values = ", ".join(f"{k} {profiles._cell(p.values[k])}" for k in profiles.PROFILES)
        print(f"{p.name}: {values} [{p.unit}] - {p.basis}")


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator``; returns the exit code."""
    return run(app, PROG, argv, name="simulator")
