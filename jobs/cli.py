"""`cpc`: the command line of the data factory. Every command takes its dates explicitly."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys

from jobs.platform.config import parse_date, settings
from jobs.platform.errors import ConfigError


def _date(text: str) -> dt.date:
    try:
        return parse_date(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _dates(args) -> list[dt.date]:
    if args.date:
        return [args.date]
    if not (args.start and args.end):
        raise SystemExit("give --date, or --start and --end")
    if args.end < args.start:
        raise SystemExit(f"--end {args.end} is before --start {args.start}")
    return [args.start + dt.timedelta(days=i) for i in range((args.end - args.start).days + 1)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cpc", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("simulate", help="generate an operator's daily files (defaults: conf/env/<CPC_ENV>.yaml 'sample')")
    s.add_argument("--customers", type=int)
    s.add_argument("--days", type=int)
    s.add_argument("--end", type=_date, help="last delivery date")
    s.add_argument("--seed", type=int)
    s.add_argument("--clean", action="store_true", help="remove earlier landing files and truth first")

    for name, helptext in (
        ("ingest", "ingest landing files of a date or range"),
        ("conform", "rebuild silver.customer_day for a date or range"),
        ("nightly", "run every stage for a date or range, in order, without Airflow"),
    ):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--date", type=_date)
        c.add_argument("--start", type=_date)
        c.add_argument("--end", type=_date)
    fn = sub.add_parser("funnel", help="print a date's CPC funnel (which policy rule removed how many) as markdown")
    fn.add_argument("--date", type=_date, required=True)
    for name in ("tags", "segments", "propensity", "score", "export", "evaluate", "summary", "reopen", "maintain", "train"):
        c = sub.add_parser(name, help=f"run the {name} stage for one date")
        c.add_argument("--date", type=_date, required=True)
    b = sub.add_parser("backfill", help="run every stage for each date of a range, in order; resumes where a stopped one ended")
    b.add_argument("--start", type=_date, required=True)
    b.add_argument("--end", type=_date, required=True)
    b.add_argument("--force", action="store_true", help="recompute dates that finished before")
    b.add_argument("--from-stage", default="ingest", help="skip earlier stages, e.g. tags after a catalogue change")
    rb = sub.add_parser("rebuild-list", help="rebuild a published list exactly as sent, from the Delta versions its manifest recorded")
    rb.add_argument("--date", type=_date, required=True)
    rb.add_argument("--channel", required=True)
    rb.add_argument("--out", help="folder for the rebuilt file (default: <root>/rebuilt/<date>)")
    h = sub.add_parser("history", help="ingest and conform every delivered date before --before (first-run bootstrap)")
    h.add_argument("--before", type=_date, required=True)
    h.add_argument("--start", type=_date)
    q = sub.add_parser("sql", help="run Spark SQL over the lake's tables (gold.customer_tags, ...)")
    q.add_argument("query")
    q.add_argument("--limit", type=int, default=50, help="most rows printed")
    sv = sub.add_parser("serve", help="serve the exported lists to downstream systems (read-only HTTP, token per system)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8765)
    r = sub.add_parser("respond", help="simulator: write a date's campaign responses to the lists published before it (before ingesting it)")
    r.add_argument("--date", type=_date, required=True)
    lp = sub.add_parser("loop", help="closed loop over several days in its own root: responses, nightly, evaluation; CPC vs blast vs oracle")
    lp.add_argument("--customers", type=int, default=20000)
    lp.add_argument("--history-days", type=int, default=105, help="days loaded before the loop (105 let the models train)")
    lp.add_argument("--days", type=int, default=8, help="loop days, each a full nightly run")
    lp.add_argument("--no-train", action="store_true", help="no propensity models: the CPC uses the rule-based fits")
    lp.add_argument("--headline-only", action="store_true", help="recompute the CPC / blast / oracle table of a finished loop in --root")
    lp.add_argument("--seed", type=int, default=42)
    lp.add_argument("--root", help="storage root, emptied first (default: <project>/var/loop)")
    sub.add_parser("catalogue-doc", help="regenerate docs/tags.md from conf/tags.yaml")
    c = sub.add_parser("conf", help="print a setting, e.g. `cpc conf sample.end_date`")
    c.add_argument("key")

    args = p.parse_args(argv)
    cfg = settings()

    if args.cmd == "conf":
        value = {"sample": cfg.sample, "root": str(cfg.paths.root), "master": cfg.spark_master, "env": cfg.env}
        for part in args.key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise SystemExit(f"no setting {args.key!r}")
            value = value[part]
        print(value)
        return 0
    if args.cmd == "sql":
        from jobs.platform.spark import get_spark
        from jobs.serving.analyst import format_rows, query

        columns, rows = query(get_spark(cfg), cfg.paths, args.query, args.limit)
        print(format_rows(columns, rows))
        print(f"({len(rows)} row(s) shown, at most {args.limit})")
        return 0
    if args.cmd == "serve":
        from jobs.serving.pull import load_systems, serve

        systems = load_systems()
        missing = [n for n, s in systems.items() if not s["token"]]
        if missing:
            print(f"serve: no token set for {', '.join(missing)} (see conf/downstream.yaml); they cannot log in")
        server = serve(cfg.paths, args.host, args.port, systems)
        print(f"serve: lists under {cfg.paths.exports} on http://{args.host}:{args.port}/lists (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.shutdown()
        return 0
    if args.cmd == "funnel":
        from jobs.platform.spark import get_spark
        from jobs.stages.cpc import funnel

        print(funnel.markdown(get_spark(cfg), cfg.paths, args.date))
        return 0
    if args.cmd == "catalogue-doc":
        from jobs.stages.tags.doc import write

        print(f"catalogue: wrote {write()}")
        return 0
    if args.cmd == "simulate":
        from simulator.generate import SimSpec, generate

        spec = SimSpec(
            customers=args.customers or int(cfg.sample["customers"]),
            days=args.days or int(cfg.sample["days"]),
            end_date=args.end or cfg.sample_end_date,
            seed=args.seed if args.seed is not None else int(cfg.sample["seed"]),
        )
        if args.clean:
            for d in (cfg.paths.landing, cfg.paths.truth):
                shutil.rmtree(d, ignore_errors=True)
        print(f"simulate: {spec.customers} customers, {spec.days} days {spec.start_date}..{spec.end_date}, seed {spec.seed} -> {cfg.paths.landing}")
        totals = generate(cfg.paths, spec)
        print("simulate: rows " + ", ".join(f"{k} {v}" for k, v in totals.items()))
        return 0

    if args.cmd == "respond":
        from simulator.generate import SimSpec
        from simulator.responder import respond

        respond(cfg.paths, SimSpec.of(cfg.paths), args.date)
        return 0
    if args.cmd == "loop":
        from pathlib import Path

        from simulator import loop

        root = Path(args.root) if args.root else cfg.paths.root / "loop"
        if args.headline_only:
            from jobs.platform.config import Paths
            from simulator.generate import SimSpec

            spec = SimSpec.of(Paths(root))
            days = spec.dates()[-args.days:]
            meta = {"customers": spec.customers, "history_days": spec.days - args.days, "seed": spec.seed,
                    "models_trained": (root / "models").exists() and any((root / "models").iterdir())}
            loop.headline(Paths(root.resolve()), spec, days, meta)
            return 0
        loop.run(args.customers, args.history_days, args.days, root.resolve(), args.seed, cfg=cfg, train=not args.no_train)
        return 0

    from jobs.orchestration import pipeline

    if args.cmd == "backfill":
        pipeline.backfill(args.start, args.end, cfg, args.force, args.from_stage)
        pipeline.print_summary(pipeline.summary(args.end, cfg))
        return 0
    if args.cmd == "rebuild-list":
        import json as _json
        from pathlib import Path

        from jobs.platform.spark import get_spark
        from jobs.stages import export

        out = Path(args.out) if args.out else cfg.paths.root / "rebuilt" / args.date.isoformat()
        res = export.rebuild(get_spark(cfg), cfg.paths, args.date, args.channel, out)
        print(_json.dumps(res, indent=2, default=str))
        return 0
    if args.cmd == "history":
        pipeline.history(args.before, cfg, args.start)
    elif args.cmd in ("ingest", "conform"):
        from jobs.platform.spark import get_spark
        from jobs.stages import conform, ingest

        spark = get_spark(cfg)
        days = _dates(args)
        if args.cmd == "ingest":
            ingest.ingest(spark, cfg.paths, days)
        else:
            conform.run(spark, cfg.paths, days)
    elif args.cmd == "nightly":
        for day in _dates(args):
            pipeline.nightly(day, cfg)
        pipeline.print_summary(pipeline.summary(day, cfg))
    elif args.cmd == "reopen":
        from jobs.platform.spark import get_spark
        from jobs.stages import ingest

        ingest.reopen(get_spark(cfg), cfg.paths, args.date)
    elif args.cmd == "summary":
        pipeline.print_summary(pipeline.summary(args.date, cfg))
    else:
        pipeline.STAGE_FUNCS[args.cmd](args.date, cfg)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a clear one-line error for a person at a terminal; the traceback in debug
        if "--debug" in sys.argv:
            raise
        first = (str(exc).splitlines() or [""])[0][:1000]
        print(f"cpc: error: {type(exc).__name__}: {first} (run with --debug for details)", file=sys.stderr)
        sys.exit(1)
