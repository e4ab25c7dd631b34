"""`cpc`: the command line of the data factory. Every command takes its dates explicitly.

The stage commands of one date (``cpc tags --date D``, ...) are built from the stage registry
(:data:`jobs.orchestration.registry.STAGES`), so the CLI, the DAGs and ``cpc nightly`` run the same functions.
Spark and the stage modules are imported when a command runs, not to print ``--help``.

Errors: a usage error (a missing option, a bad date) prints the usage and exits 2; any other error prints one
line, ``cpc: error: <Type>: <message> (run with --debug for details)``, and exits 1; ``--debug`` shows the
traceback (and DEBUG log records) instead.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

if __name__ == "__main__" and not __package__:
    # Run as a file (`spark-submit jobs/cli.py ...`, docs/cluster.md): Python puts jobs/ first on the path, where
    # jobs/platform would hide the standard library's `platform`. The package is imported from the project.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import typer  # noqa: E402

from jobs.orchestration.registry import NIGHTLY_NAMES, STAGES, Stage  # noqa: E402
from jobs.platform import logs  # noqa: E402
from jobs.platform.config import parse_date, settings  # noqa: E402
from jobs.platform.errors import ConfigError, CpcError  # noqa: E402
from schemas import FILES  # noqa: E402

PROG = "cpc"
DEBUG_HELP = "Show DEBUG log records and a full traceback on error (may also follow the command)."

app = typer.Typer(
    name=PROG,
    help="The data factory's command line: daily files -> Delta tables -> tags -> ranked customer-product-channel "
         "lists. Every command takes its dates explicitly (YYYY-MM-DD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # main() prints one line, or the plain traceback with --debug
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _date(text: str) -> dt.date:
    """A YYYY-MM-DD option value, parsed as everywhere else in the factory."""
    try:
        return parse_date(text)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc


def date_option(*names: str, help: str):
    """A date option (YYYY-MM-DD, parsed by :func:`jobs.platform.config.parse_date`)."""
    return typer.Option(*names, help=help, parser=_date, metavar="YYYY-MM-DD", show_default=False)


Date = Annotated[dt.date, date_option("--date", help="The run date.")]
OptDate = Annotated[dt.date | None, date_option("--date", help="One date (or give --start and --end).")]
Start = Annotated[dt.date | None, date_option("--start", help="First date of a range (with --end).")]
End = Annotated[dt.date | None, date_option("--end", help="Last date of a range (with --start).")]


def _dates(date: dt.date | None, start: dt.date | None, end: dt.date | None) -> list[dt.date]:
    """The dates of --date, or of --start..--end (inclusive)."""
    if date is not None:
        if start is not None or end is not None:
            raise typer.BadParameter("give --date, or --start and --end, not both")
        return [date]
    if start is None or end is None:
        raise typer.BadParameter("give --date, or --start and --end")
    if end < start:
        raise typer.BadParameter(f"{end} is before --start {start}", param_hint="'--end'")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _print_summary(day: dt.date, cfg) -> None:
    from jobs.orchestration.summary import print_summary, summary

    print_summary(summary(day, cfg))


@app.callback()
def _global(debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False) -> None:
    """Options before the command apply to every command."""
    logs.setup(debug=debug)


# --- ranges of dates -------------------------------------------------------------------------------------


@app.command(help="Ingest the landing files of a date or a range: control file, schema and Great Expectations "
                  "checks -> bronze tables, quarantine, ingest ledger.")
def ingest(
    date: OptDate = None,
    start: Start = None,
    end: End = None,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", metavar="KIND", show_default=False,
        help=f"Ingest only this file kind (repeat for several; default: all): {', '.join(FILES)}.")] = None,
) -> None:
    days = _dates(date, start, end)
    unknown = [k for k in kind or [] if k not in FILES]
    if unknown:
        raise typer.BadParameter(f"unknown file kind {', '.join(map(repr, unknown))}; kinds: {', '.join(FILES)}",
                                 param_hint="'--kind'")
    from jobs.platform.spark import get_spark
    from jobs.stages import ingest as stage

    cfg = settings()
    stage.ingest(get_spark(cfg), cfg.paths, days, kinds=list(dict.fromkeys(kind)) if kind else None)


@app.command(help="Rebuild silver.customer_day (the daily aggregates) for a date or a range.")
def conform(date: OptDate = None, start: Start = None, end: End = None) -> None:
    days = _dates(date, start, end)
    from jobs.platform.spark import get_spark
    from jobs.stages import conform as stage

    cfg = settings()
    stage.run(get_spark(cfg), cfg.paths, days)


@app.command(help="Run every nightly stage for a date or a range, in order, without Airflow; then print the "
                  "last date's summary.")
def nightly(
    date: OptDate = None,
    start: Start = None,
    end: End = None,
    show_summary: Annotated[bool, typer.Option(
        "--summary/--no-summary", help="Print the last date's summary (it reads every table); --no-summary: the "
                                       "stages only, as the nightly DAG runs them.")]
        = True,
) -> None:
    days = _dates(date, start, end)
    from jobs.orchestration import pipeline

    cfg = settings()
    for day in days:
        pipeline.nightly(day, cfg)
    if show_summary:
        _print_summary(days[-1], cfg)


# --- the stages of one date, from the registry -------------------------------------------------------------


def _stage_command(stage: Stage) -> None:
    def command(date: Date) -> None:
        STAGES[stage.name](date, settings())

    command.__name__ = command.__qualname__ = stage.name.replace("-", "_")
    app.command(stage.name, help=f"Run the {stage.name} stage for one date: {stage.doc}.")(command)


for _stage in STAGES.values():
    if _stage.name not in ("ingest", "conform", "tags", "evaluate"):  # ingest, conform: a range (above); tags, evaluate: options (below)
        _stage_command(_stage)


@app.command("tags", help=f"Run the tags stage for one date: {STAGES['tags'].doc}. The window features are read "
                          "from the incremental state (silver.tag_state), stepped from the day before or bootstrapped "
                          "from the history (docs/incremental-tags.md).")
def tags(
    date: Date,
    full: Annotated[bool, typer.Option(
        "--full", help="Recompute the window features from the history (the reference) and rebuild the date's "
                       "state from it, instead of stepping the state.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Then compare the date's state and its features with the full recompute for every "
                        "customer; fail naming the first difference.")] = False,
) -> None:
    STAGES["tags"](date, settings(), full=full, check=check)


@app.command("evaluate", help=f"Run the evaluate stage for one date: {STAGES['evaluate'].doc}. Rebuilds the outcomes "
                              "of the decision dates that can have changed since the evaluation before "
                              "(docs/evaluation.md).")
def evaluate(
    date: Date,
    full: Annotated[bool, typer.Option(
        "--full", help="Rebuild the outcomes of every decision date of the lookback, as when nothing tells which "
                       "can have changed.")] = False,
) -> None:
    STAGES["evaluate"](date, settings(), full=full)


@app.command(help="Print a date's summary: where everything is, rows per table, tags, list sizes per channel "
                  "(also written to reports/run_<date>.json). Reads the tables without Spark: seconds.")
def summary(date: Date) -> None:
    _print_summary(date, settings())


@app.command(help="Reopen a closed delivery date so that its files can be ingested again; the tag states from "
                  "that date on are marked invalid (the next tags run rebuilds them from the day before).")
def reopen(date: Date) -> None:
    from jobs.platform.spark import get_spark
    from jobs.stages import ingest as stage
    from jobs.stages.tags import incremental

    cfg = settings()
    spark = get_spark(cfg)
    stage.reopen(spark, cfg.paths, date)
    incremental.invalidate(spark, cfg.paths, date)


@app.command(help="Print a date's CPC funnel (which policy rule removed how many) as markdown. Reads without Spark.")
def funnel(date: Date) -> None:
    from jobs.stages.cpc import funnel as stage

    print(stage.markdown(stage.read(settings().paths, date), date))


@app.command(help="Run every nightly stage for each date of a range, in order; resumes where a stopped backfill "
                  "ended. Prints the last date's summary.")
def backfill(
    start: Annotated[dt.date, date_option("--start", help="First date.")],
    end: Annotated[dt.date, date_option("--end", help="Last date.")],
    force: Annotated[bool, typer.Option("--force", help="Recompute dates that finished before.")] = False,
    from_stage: Annotated[str, typer.Option(
        "--from-stage", metavar="STAGE",
        help=f"Skip the earlier stages, e.g. tags after a catalogue change: {', '.join(NIGHTLY_NAMES)}.")]
        = NIGHTLY_NAMES[0],
) -> None:
    if end < start:
        raise typer.BadParameter(f"{end} is before --start {start}", param_hint="'--end'")
    if from_stage not in NIGHTLY_NAMES:
        raise typer.BadParameter(f"unknown stage {from_stage!r}; stages: {', '.join(NIGHTLY_NAMES)}",
                                 param_hint="'--from-stage'")
    from jobs.orchestration import pipeline

    cfg = settings()
    pipeline.backfill(start, end, cfg, force, from_stage)
    _print_summary(end, cfg)


@app.command("rebuild-list", help="Rebuild a published list exactly as sent, from the Delta versions its "
                                  "manifest recorded; prints the result as JSON.")
def rebuild_list(
    date: Annotated[dt.date, date_option("--date", help="The date the list was published for.")],
    channel: Annotated[str, typer.Option("--channel", help="The list's channel, e.g. sms_push.",
                                         show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the rebuilt file (default: <root>/rebuilt/<date>).", show_default=False)] = None,
) -> None:
    import json

    from jobs.platform.spark import get_spark
    from jobs.stages import export

    cfg = settings()
    res = export.rebuild(get_spark(cfg), cfg.paths, date, channel, out or cfg.paths.root / "rebuilt" / date.isoformat())
    print(json.dumps(res, indent=2, default=str))


@app.command(help="Ingest and conform every delivered date before --before in one batch (a first run's "
                  "history for its 30-day windows).")
def history(
    before: Annotated[dt.date, date_option("--before", help="Load the delivered dates before this one.")],
    start: Annotated[dt.date | None, date_option("--start", help="Load only from this date on.")] = None,
) -> None:
    from jobs.orchestration import pipeline

    pipeline.history(before, settings(), start)


@app.command(help="Run Spark SQL over the lake's tables (gold.customer_tags, ...) and print the rows.")
def sql(
    query: Annotated[str, typer.Argument(help="The query, e.g. \"SELECT * FROM gold.tag_catalogue\".",
                                         show_default=False)],
    limit: Annotated[int, typer.Option("--limit", help="Most rows printed.")] = 50,
) -> None:
    from jobs.platform.spark import get_spark
    from jobs.serving.analyst import format_rows
    from jobs.serving.analyst import query as run_query

    cfg = settings()
    columns, rows = run_query(get_spark(cfg), cfg.paths, query, limit)
    print(format_rows(columns, rows))
    print(f"({len(rows)} row(s) shown, at most {limit})")


@app.command(help="Serve the exported lists to downstream systems (read-only HTTP, a token per system); "
                  "Ctrl-C stops.")
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
) -> None:
    from jobs.serving.pull import load_systems
    from jobs.serving.pull import serve as start

    cfg = settings()
    systems = load_systems()
    missing = [n for n, s in systems.items() if not s["token"]]
    if missing:
        print(f"serve: no token set for {', '.join(missing)} (see conf/downstream.yaml); they cannot log in")
    server = start(cfg.paths, host, port, systems)
    print(f"serve: lists under {cfg.paths.exports} on http://{host}:{port}/lists (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


@app.command("catalogue-doc", help="Regenerate docs/tags.md from conf/tags.yaml.")
def catalogue_doc() -> None:
    from jobs.stages.tags.doc import write

    print(f"catalogue: wrote {write()}")


@app.command(help="Print a setting of the environment (CPC_ENV), e.g. `cpc conf sample.end_date`.")
def conf(key: Annotated[str, typer.Argument(
        help="Dotted name: env, root, master, nightly_tasks, sample, sample.<name> (customers, days, end_date, seed, profile, "
             "warmup_days).",
        show_default=False)]) -> None:
    cfg = settings()
    value = {"sample": cfg.sample, "root": str(cfg.paths.root), "master": cfg.spark_master, "env": cfg.env,
             "nightly_tasks": cfg.nightly_tasks}
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ConfigError(f"no setting {key!r} in environment {cfg.env!r}; settings: {', '.join(_names(value))}")
        value = value[part]
    print(value)


def _names(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out.append(prefix + str(k))
        if isinstance(v, dict):
            out.extend(_names(v, f"{prefix}{k}."))
    return out


# --- the entry point -----------------------------------------------------------------------------------------


def error_line(prog: str, exc: BaseException) -> str:
    """What a person at a terminal sees of an error: one line, no traceback. The factory's own errors are written
    for people, and some name several things one per line (every rejected file): those lines are kept, indented
    under the first."""
    lines = str(exc).splitlines() or [""]
    rest = [f"  {line.strip()}"[:1000] for line in lines[1:50]] if isinstance(exc, CpcError) else []
    return "\n".join([f"{prog}: error: {type(exc).__name__}: {lines[0][:1000]} (run with --debug for details)", *rest])


def run(typer_app: typer.Typer, prog: str, argv: list[str] | None = None, name: str | None = None) -> int:
    """Run a Typer app as a command line and return its exit code: 0 ok, 1 error, 2 usage error. ``prog`` is
    the program in the usage lines, ``name`` (default ``prog``) the one in the error line.

    ``--debug`` is global (``prog --debug CMD``) but may also be written after the command; it is moved to
    the front. Logs print as plain lines (:func:`jobs.platform.logs.setup`). Without ``--debug`` an exception
    becomes one line on stderr; with it the exception propagates (its traceback is printed).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:cut]
    if debug:
        args = ["--debug", *[a for a in args[:cut] if a != "--debug"], *args[cut:]]
    logs.setup(debug=debug)
    try:
        typer_app(args=args, prog_name=prog, standalone_mode=True)
    except SystemExit as exc:  # standalone mode ends every run with one, after printing usage errors and help
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(f"{name or prog}: error: {code}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            raise
        print(error_line(name or prog, exc), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``cpc`` console script (``setup.cfg``); returns the exit code."""
    return run(app, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
