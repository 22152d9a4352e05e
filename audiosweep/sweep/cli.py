"""Sweeps: check W&B sweep files, run them locally on a pool of workers, or start W&B agents on every GPU.

    python -m audiosweep.sweep check sweeps/*.yaml                  # validate, count the runs
    python -m audiosweep.sweep check THEIR.yaml --config base.yaml --runs   # each run's config, as JSON lines
    python -m audiosweep.sweep check sweeps/*.yaml --estimate       # and device-hours, from records under results/
    python -m audiosweep.sweep run sweeps/smoke.yaml --workers 2    # local pool, no W&B server needed
    python -m audiosweep.sweep run sweeps/hop_length.yaml --gpus 0,1 --runs_per_gpu 2
    wandb sweep sweeps/hop_length.yaml                               # W&B controller; prints SWEEP_ID
    python -m audiosweep.sweep agents ENTITY/PROJECT/SWEEP_ID --gpus 8
    python -m audiosweep.sweep best results/hop_length > best.yaml   # the best configuration, as a recipe
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli_flags import ArgumentParser
from ..errors import EXIT_OK, EXIT_REFUSED, AudiosweepError, ConfigError, SweepError
from ..results import check_results_dir
from .spec import (
    LOCAL_METHODS,
    MAX_GRID_POINTS,
    MAX_SWEEP_BYTES,
    MAX_YAML_NODES,
    build_command,
    count_label,
    expand,
    load_recipe,
    load_sweep,
)


def cmd_check(args: argparse.Namespace) -> int:
    out = sys.stderr if args.runs else sys.stdout  # --runs: stdout holds the JSON lines only
    recipe = load_recipe(args.config) if args.config else None
    bad, total, seconds = 0, 0, 0.0
    for f in args.files:
        try:
            sweep = load_sweep(f, recipe)
            plan = expand(sweep, seed=args.seed)
        except SweepError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            bad += 1
            continue
        listed = plan.bounded and sweep.method != "bayes"
        missing = missing_weights_errors(f, plan.runs) if listed and args.weights else []
        for line in missing:
            print(f"error: {line}", file=sys.stderr, flush=True)
        bad += bool(missing)
        total += len(plan.runs) if listed else 0
        varies = " x ".join(f"{n} ({sweep.params[n].grid_size()})" if sweep.method == "grid" else n
                            for n in sweep.varying)
        print(f"{f}: {count_label(sweep, plan)}" + (f"; varies {varies}" if varies else ""), file=out, flush=True)
        for note in plan.notes:
            print(f"  note: {note}", file=out)
        if args.estimate and listed:
            seconds += add_estimate(args, sweep, plan, out)
        if args.runs and listed:
            for run in plan.runs:
                print(json.dumps({"sweep": str(f), "config_id": run.config_id, "config": run.config}), flush=True)
        elif args.runs:
            print(f"  note: --runs lists no run of {f}: a {sweep.method} sweep without a bound chooses its runs "
                  "as it goes", file=out)
    print(f"{len(args.files) - bad} of {len(args.files)} sweep file(s) valid; {total} runs in the bounded ones"
          + (f"; estimated {seconds / 3600:.2f} device-hours for those with matching records" if args.estimate
             else ""), file=out)
    return EXIT_REFUSED if bad else EXIT_OK


def add_estimate(args: argparse.Namespace, sweep, plan, out) -> float:
    """Print ``--estimate``'s lines for one sweep file; return its estimated seconds."""
    from .cost import CostModel, calibration_command, estimate, estimate_lines, this_device

    if not hasattr(args, "cost_model"):  # the records are read once for all files
        args.cost_model = CostModel.from_records(Path(args.results_dir))
    device = this_device(plan.runs[0].config["device"]) if plan.runs else this_device()
    est = estimate(args.cost_model, (run.config for run in plan.runs), device)
    first = next((run for run in plan.runs if run.config is est.unknown[0]), None) if est.unknown else None
    calibration = None if first is None else calibration_command(build_command(sweep, first.params),
                                                                 Path(args.results_dir))
    for line in estimate_lines(str(sweep.path), est, device, Path(args.results_dir), calibration):
        print(line, file=out)
    return est.seconds


def missing_weights_errors(path, runs) -> list[str]:
    """One line per pretrained weights file that ``runs`` need and this machine neither holds nor can download:
    the file, where it goes, which architectures need it and in how many grid points. Each host is probed once."""
    import functools

    from ..config import Config
    from ..models.base import missing_weights, reachable
    from ..preflight import weights_message

    probe, groups = functools.cache(reachable), {}
    for run in runs:
        if (missing := missing_weights(Config(**run.config), probe)) is not None:
            groups.setdefault(missing, []).append(run.config["arch"])
    return [f"{path}: {weights_message(m, ', '.join(dict.fromkeys(archs)))} ({len(archs)} grid point"
            f"{'s' * (len(archs) != 1)})" for m, archs in groups.items()]


def cmd_run(args: argparse.Namespace) -> int:
    from .agents import parse_gpus, visible_gpus
    from .runner import Options, Runner, Source

    if args.wandb_mode == "online" and not args.dry_run:
        require_wandb_credentials("--wandb_mode online", "pass --wandb_mode offline (its runs sync later with "
                                  "`wandb sync`)")
    sweep = load_sweep(args.file, load_recipe(args.config) if args.config else None)
    if sweep.method not in (*LOCAL_METHODS, "bayes"):  # bayes: an Optuna study (bayes.py)
        raise SweepError(f"{args.file}: method {sweep.method} needs W&B's sweep controller: run `wandb sweep "
                         f"{args.file}` and then `python -m audiosweep.sweep agents SWEEP_ID`, or use method "
                         f"{' or '.join(LOCAL_METHODS)} to run it here")
    plan = expand(sweep, count=args.count, seed=args.seed)
    if not plan.bounded:
        raise SweepError(f"{args.file}: a {sweep.method} sweep without run_cap never ends: give --count N")
    if args.gpus is not None:
        if args.workers is not None:
            raise SweepError("give --workers N (CPU) or --gpus (one worker per GPU and --runs_per_gpu), not both")
        gpus = parse_gpus(args.gpus, visible_gpus(), strict=not args.dry_run)
        slots: list[str | None] = [g for _ in range(args.runs_per_gpu) for g in gpus]
    else:
        slots = [None] * (args.workers or 1)
    prior = None if args.dry_run else prior_seconds(plan, Path(args.results_dir), slots[0])
    opts = Options(results_root=Path(args.results_dir), slots=slots, wandb_mode=args.wandb_mode,
                   dry_run=args.dry_run, prior_s=prior, max_failures=args.max_failures)
    folder = opts.folder(sweep)
    if not args.dry_run:  # the records, logs, lock and study go there: refused before any work when it cannot
        try:
            check_results_dir(folder, "--results_dir", "--results_dir")
            check_data_dirs(plan.runs)
        except ConfigError as e:
            raise SweepError(str(e)) from None
    if sweep.method == "bayes":
        from .bayes import StudySource

        source: Source = StudySource(sweep, folder, args.count, args.seed, args.storage)
    else:
        from .plan import PlanSource

        source = PlanSource(sweep, plan, folder, args.retry_failed)
    if not sweep.raw.get("early_terminate"):
        return Runner(sweep, source, opts).run()
    from .early_terminate import Hyperband, RungSource

    if sweep.method != "bayes":  # the pruner compares trials: a plan's runs become trials of a study of rungs
        source = RungSource(source, sweep, folder)
    return Runner(sweep, source, opts, Hyperband(folder, sweep.raw["metric"]["name"], source.trial)).run()


def check_data_dirs(runs) -> None:
    """Each data folder of the listed ``runs`` checked once as train.py checks it (a typo of data_dir, a dataset
    missing with download false): one refusal for the sweep, not one failed run after another. A bayes sweep
    lists no run: its runs check their own."""
    from ..config import Config
    from ..datasets.presence import check_data_dir

    seen = set()
    for run in runs:
        cfg = Config(**run.config)
        if (where := (cfg.dataset_name, cfg.data_root, cfg.data_dir is None, cfg.download)) not in seen:
            seen.add(where)
            check_data_dir(cfg)


def prior_seconds(plan, results_dir: Path, gpu: str | None) -> float | None:
    """The mean seconds of the plan's runs by the cost model, over those with matching records under
    ``results_dir`` (None without any): the runner's ETA before a run has ended."""
    from .cost import CostModel, this_device

    if not plan.runs:
        return None
    model = CostModel.from_records(results_dir)
    if not model.measured:  # no records: no torch import in the runner either
        return None
    device = this_device(f"cuda:{gpu}" if gpu is not None and gpu.isdigit() else plan.runs[0].config["device"],
                         init_cuda=False)  # the runs get the GPUs: no CUDA context in the runner
    if device is None:
        return None
    known = [s for run in plan.runs if (s := model.run_seconds(run.config, device)) is not None]
    return sum(known) / len(known) if known else None


def cmd_agents(args: argparse.Namespace) -> int:
    from .agents import parse_gpus, plan_agents, run_agents, visible_gpus

    if not args.dry_run:
        require_wandb_credentials("agents", "run the sweep here without the W&B server: python -m audiosweep.sweep "
                                  "run FILE --wandb_mode offline")
    agents = plan_agents(args.sweep_id, parse_gpus(args.gpus, visible_gpus(), strict=not args.dry_run), args.count,
                         Path(args.log_dir) if args.log_dir else None)
    if args.dry_run:
        for a in agents:
            print(a.shell())
        return 0
    return run_agents(agents)


def require_wandb_credentials(subject: str, instead: str) -> None:
    """Refuse, before any run starts, W&B work that needs the W&B server on a machine without credentials."""
    from ..tracking import has_wandb_credentials, no_credentials_message

    if not has_wandb_credentials():
        raise SweepError(no_credentials_message(subject, instead))


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m audiosweep.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{check,run,agents,best}")
    gpus_help = ("N = the first N visible GPUs; a list 0,2,5 = those GPU ids (one GPU: '3,'); all = every "
                 "visible GPU")

    recipe_help = ("a recipe (train.py's --config file) laid under every run: the sweep's values and its own "
                   "config parameter win over it; the runs get --config RECIPE (local runs only: W&B agents run "
                   "the sweep file's own command)")
    c = sub.add_parser("check", help="validate sweep files and print their number of runs",
                       description="Validate W&B sweep files (top-level keys, method, metric, parameter forms, "
                                   "program) and every configuration they expand to, with train.py's own config "
                                   "rules; print each file's number of runs. Limits: a sweep file is UTF-8 of at most "
                                   f"{MAX_SWEEP_BYTES >> 20} MiB whose YAML aliases expand to at most "
                                   f"{MAX_YAML_NODES} nodes; a grid has at most {MAX_GRID_POINTS} points (run_cap: N "
                                   "runs the first N of a larger one). --runs: print each run as one JSON "
                                   "line on stdout, {\"sweep\": FILE, \"config_id\": ID, \"config\": {...}} "
                                   "(the effective config train.py records), and the summary on stderr. The "
                                   "pretrained weights its runs need must be in the local caches, or their download "
                                   "host reachable: each missing file is named once, with its architectures and "
                                   "grid points. Exit status 2 if any file is invalid or weights are missing.")
    c.add_argument("files", nargs="+", metavar="FILE.yaml")
    c.add_argument("--seed", type=int, default=0, help="seed of the random samples validated (default: 0)")
    c.add_argument("--config", metavar="RECIPE.yaml", help=recipe_help)
    c.add_argument("--runs", action="store_true",
                   help="print each run of a grid sweep or a bounded random one as a JSON line on stdout: its "
                        "config id and the effective config train.py uses (after the recipe, the report's keys and "
                        "the values with no effect set as runs record them); the summary goes to stderr")
    c.add_argument("--no_weights", dest="weights", action="store_false",
                   help="skip the check that the pretrained weights the runs need are on this machine or "
                        "downloadable from it (to check files for another machine)")
    c.add_argument("--estimate", action="store_true",
                   help="also print each file's estimated device-hours on this machine's device, from the epoch "
                        "times of records of the same architecture and input shape under --results_dir (and a "
                        "short calibration run to make when there are none)")
    c.add_argument("--results_dir", default="results", metavar="DIR",
                   help="where --estimate looks for records, searched recursively (default: results)")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("run", help="run a sweep locally (grid, random or bayes), resumable",
                       description="Run every configuration of a grid or random sweep file as the command a W&B "
                                   "agent runs (python train.py --key=value ...), on a pool of workers. Results: "
                                   "RESULTS_DIR/<sweep name>/ (one record per run), logs in its logs/ folder. A run "
                                   "with a finished record is never run again, so running the same command again "
                                   "resumes an interrupted sweep. A bayes sweep runs --count trials of an Optuna "
                                   "study (TPE; early_terminate hyperband: successive halving per epoch), stored in "
                                   "RESULTS_DIR/<sweep name>/optuna.journal or --storage, which runners on several "
                                   "machines can share (with the results folder: a runner claims each configuration "
                                   "in its .claims/ folder before running it, so none runs twice); grid and random "
                                   "sweeps apply early_terminate hyperband "
                                   "the same way. Ctrl-C stops the running runs (twice: kills them). "
                                   "Exit status: 0 all runs finished, 1 any failed, 2 invalid sweep, 128+N when "
                                   "stopped by signal N.")
    r.add_argument("file", metavar="FILE.yaml")
    r.add_argument("--config", metavar="RECIPE.yaml", help=recipe_help)
    r.add_argument("--workers", type=positive, metavar="N", help="runs at a time, environment as is (default: 1)")
    r.add_argument("--gpus", metavar="SPEC", help=f"one worker per GPU with CUDA_VISIBLE_DEVICES set: {gpus_help}")
    r.add_argument("--runs_per_gpu", type=positive, default=1, metavar="K", help="runs at a time per GPU (default: 1)")
    r.add_argument("--count", type=positive, metavar="N",
                   help="the sweep's first N configurations (random: N distinct samples; bayes: N more trials of "
                        "its study, as `wandb agent --count`); also bounded by run_cap")
    r.add_argument("--seed", type=int, default=0, help="seed of random sweeps; keep it to resume one (default: 0)")
    r.add_argument("--results_dir", default="results", metavar="DIR", help="root of the results folders "
                                                                           "(default: results)")
    r.add_argument("--wandb_mode", default="auto", choices=["disabled", "offline", "online", "auto"],
                   help="passed to train.py as --wandb_mode; auto: online with W&B credentials, else offline runs "
                        "in RESULTS_DIR/<sweep name>/wandb, to `wandb sync` later; online without credentials is "
                        "refused before any run (default: auto). W&B's run summary reaches the logs only with "
                        "wandb_verbose: true")
    r.add_argument("--no_retry_failed", dest="retry_failed", action="store_false",
                   help="report runs that failed before instead of running them again (default: rerun them)")
    r.add_argument("--max_failures", type=non_negative, default=3, metavar="N",
                   help="stop starting runs once N runs in a row failed with the same error (the running ones "
                        "finish; exit status 1), e.g. the dataset that cannot be downloaded offline; 0 = never "
                        "stop (default: 3)")
    r.add_argument("--storage", metavar="URL",
                   help="bayes: the Optuna study's storage, an RDB URL such as sqlite:///study.db or "
                        "postgresql://host/db, shared by runners on many machines (default: the journal file "
                        "RESULTS_DIR/<sweep name>/optuna.journal)")
    r.add_argument("--dry_run", action="store_true", help="list the runs, their status and commands; run nothing")
    r.set_defaults(func=cmd_run)

    a = sub.add_parser("agents", help="start one W&B agent per GPU for a sweep created with `wandb sweep`",
                       description="Start one `wandb agent SWEEP_ID` per GPU, each with CUDA_VISIBLE_DEVICES set "
                                   "and its output in LOG_DIR/gpu<ID>.log, and wait for them (W&B credentials "
                                   "needed: `wandb login` or WANDB_API_KEY). Ctrl-C is passed on "
                                   "to every agent: first they finish their current runs, a second Ctrl-C "
                                   "terminates the runs, a third kills them.")
    a.add_argument("sweep_id", metavar="SWEEP_ID", help="as printed by `wandb sweep FILE`: ENTITY/PROJECT/ID or ID")
    a.add_argument("--gpus", metavar="SPEC", help=f"{gpus_help} (default: all)")
    a.add_argument("--count", type=positive, metavar="N", help="runs per agent (wandb agent --count)")
    a.add_argument("--log_dir", metavar="DIR", help="agent logs (default: results/agent-logs/<SWEEP_ID>)")
    a.add_argument("--dry_run", action="store_true", help="print the agent commands; start nothing")
    a.set_defaults(func=cmd_agents)

    # listed here; main hands its arguments to analysis.best (pandas and the analysis loaders load only then)
    sub.add_parser("best", add_help=False, help="the best configuration of a sweep's results as a recipe YAML "
                   "(for --config): python -m audiosweep.sweep best SOURCE > best.yaml; --help for more")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["best"]:
        from analysis.best import main as best

        return best(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AudiosweepError as e:  # a bad sweep file, or a folder the runner must not write through
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
