"""The `bench` command line (Typer). Thin: parse, then call the library.

Exit codes: 0 success; 2 bad usage or bad input (one line naming the key or file and the fix);
1 a run that failed (its MLflow run is marked FAILED, with what it had logged kept).
Heavy imports (torch, mlflow) happen inside commands so that `bench list` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bench.console import run_epilog
from bench.errors import BenchInputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark harness for training-data reconstruction attacks (Haim et al. 2022).",
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    tasks_dir: Annotated[
        str | None,
        typer.Option(
            "--tasks-dir",
            help="also load task files (*.py declaring TASKS) from DIR (default: $BENCH_TASKS_DIR, else "
            "./tasks if present; see docs/tasks.md)",
        ),
    ] = None,
) -> None:
    """Benchmark harness for training-data reconstruction attacks (Haim et al. 2022)."""
    if tasks_dir is not None:
        import os

        from bench.tasks import user

        try:
            os.environ[user.ENV] = str(user.tasks_dir(tasks_dir))  # worker processes inherit it
        except BenchInputError as e:
            _fail_input(e)


ProfileOpt = Annotated[str, typer.Option("--profile", "-p", help="smoke | quick | paper")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a config value: dotted.key=value (repeatable)"),
]
UriOpt = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlruns/mlflow.db)"),
]
ExpOpt = Annotated[
    str | None, typer.Option("--experiment", help="MLflow experiment name (default: the task)")
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="auto | cpu | cuda | cuda:N | mps (auto: the first CUDA GPU, else the CPU; = --set device=...)",
    ),
]


def _probe(tracking_uri: str | None) -> None:
    """The tracking URI (--tracking-uri, else $MLFLOW_TRACKING_URI) must be one bench accepts and an http(s)
    tracking server must answer (exit 2 otherwise), checked before the heavy imports and any work."""
    import os

    from bench.tracking import check_tracking_uri, probe_tracking_uri

    if uri := tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "":
        check_tracking_uri(uri)
    probe_tracking_uri(uri)


def _with_device(overrides: dict[str, str], device: str | None) -> dict[str, str]:
    """--device as the config key `device`; the device named (by either) must exist here (exit 2).
    It becomes the process's device (bench.device.configure) for the runs created before training."""
    from bench.device import configure

    if device is not None:
        overrides["device"] = device
    configure(overrides.get("device", "auto"))
    return overrides


def _fail_input(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(2)


def _overrides(pairs: list[str] | None) -> dict[str, str]:
    from bench.config import parse_assignment

    return dict(parse_assignment(text) for text in pairs or [])


def _check_profile(task, profile: str) -> None:
    if profile not in task.profiles:
        raise BenchInputError(
            f"unknown profile '{profile}' for '--profile': use one of {', '.join(task.profiles)}"
        )


@app.command("list")
def list_tasks(
    names: Annotated[list[str] | None, typer.Argument(help="tasks to describe (default: all)")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="profiles (series, seeds, overrides) and config keys")
    ] = False,
) -> None:
    """List the tasks, one line each; -v: each task's profiles, series values, seeds and config keys."""
    from bench.tasks import all_tasks, get_task

    try:
        tasks = {n: get_task(n) for n in names} if names else all_tasks()
    except BenchInputError as e:
        _fail_input(e)
    if not verbose and not names:
        for name, task in tasks.items():
            typer.echo(f"{name:<18} {task.summary}")
        return
    from bench.console import describe_task, shared_keys

    for task in tasks.values():
        typer.echo("\n".join(describe_task(task, all_keys=bool(names))) + "\n")
    if not names:
        typer.echo("\n".join(shared_keys()))


@app.command(epilog=run_epilog())
def run(
    task: Annotated[str, typer.Argument(help="task name (see `bench list -v TASK`)")],
    profile: ProfileOpt = "quick",
    seeds: Annotated[int | None, typer.Option("--seeds", min=1, help="seeds per series point")] = None,
    set_: SetOpt = None,
    population: Annotated[
        list[str] | None,
        typer.Option(
            "--population", help="an attack setting 'lr=0.01,alpha=100' (repeatable): run them batched"
        ),
    ] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            "--sweep",
            help="any config key as an axis 'train.weight_decay=0,1e-3' (repeatable, crossed with each "
            "other and with the series; the series key replaces the series)",
        ),
    ] = None,
    tracking_uri: UriOpt = None,
    experiment: ExpOpt = None,
    device: DeviceOpt = None,
    jobs: Annotated[
        str,
        typer.Option("--jobs", "-j", envvar="BENCH_JOBS", help="N worker processes, or auto: one a core"),
    ] = "auto",
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="run only slice I of N of the series x seeds, e.g. 2/8 (needs --group)"),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group", help="tag the runs with this group; `bench summarise --group` merges its shards"
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="run only the runs not FINISHED in the store (same config)")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="the table's full metric names and the raw trend values")
    ] = False,
) -> None:
    """Run a task's series (x seeds) and log every run to MLflow.

    SIGTERM or Ctrl-C: the runs in progress and the parent end KILLED (their curves kept), and one line
    gives the command that resumes (exit 143 or 130)."""
    from bench.attack.protocol import parse_setting
    from bench.parallel import parse_jobs, parse_shard
    from bench.tasks import get_task

    try:
        jobs_ = parse_jobs(jobs)
        _probe(tracking_uri)
        spec = get_task(task)
        _check_profile(spec, profile)
        overrides = _with_device(_overrides(set_), device)
        settings = [parse_setting(s) for s in population] if population else None
        from bench.sweep import parse_sweeps

        sweeps = parse_sweeps(sweep)
        if shard is not None and group is None:
            raise BenchInputError(
                "--shard needs --group NAME; fix: add --group NAME (the same for every shard)"
            )
        shard_ = parse_shard(shard) if shard is not None else None
    except BenchInputError as e:
        _fail_input(e)
    import sys

    from bench import signals
    from bench.parallel import start_early

    start_early(jobs_, tracking_uri)  # workers may run: their fork server imports while this process does
    from bench.console import Progress, print_summary
    from bench.resume import resumed_line
    from bench.runner import run_task

    # drawn once a run starts in this process; with workers bench.parallel draws a bar per worker instead
    with signals.handled(), Progress() as progress:
        try:
            summary = run_task(
                spec,
                profile,
                seeds,
                overrides,
                tracking_uri,
                experiment,
                settings,
                progress.hooks,
                sweeps,
                jobs=jobs_,
                shard=shard_,
                group=group,
                resume=resume,
                echo=lambda line: typer.echo(line, err=True),
            )
        except BenchInputError as e:
            progress.stop()
            _fail_input(e)
        except KeyboardInterrupt as e:
            progress.stop()
            stopped = e if isinstance(e, signals.Interrupted) else signals.Interrupted(2)
            typer.echo(stopped.message(sys.argv), err=True)
            raise typer.Exit(stopped.exit_code) from None
        except Exception as e:
            progress.stop()
            typer.echo(f"run failed: {type(e).__name__}: {e} (the MLflow run is marked FAILED)", err=True)
            raise typer.Exit(1) from None
    if summary.reused or summary.nothing_left:
        typer.echo(resumed_line(summary), err=True)
    if not summary.nothing_left:
        print_summary(spec, summary, tracking_uri, verbose)


@app.command()
def summarise(
    task: Annotated[str, typer.Argument(help="the task the group ran")],
    group: Annotated[str, typer.Option("--group", help="the --group of the shards to merge")],
    tracking_uri: UriOpt = None,
    experiment: ExpOpt = None,
) -> None:
    """Merge the shards of a group into one series table and log its summary (docs/scaling.md)."""
    from bench.console import print_summary
    from bench.parallel import summarise_group
    from bench.tasks import get_task

    try:
        spec = get_task(task)
        summary = summarise_group(
            spec, group, tracking_uri, experiment, lambda line: typer.echo(line, err=True)
        )
    except BenchInputError as e:
        _fail_input(e)
    print_summary(spec, summary, tracking_uri)


@app.command()
def perf(
    depth: Annotated[int, typer.Option(min=2, help="weight layers")] = 3,
    width: Annotated[int, typer.Option(min=1)] = 1000,
    d: Annotated[int, typer.Option(min=1, help="input features")] = 784,
    n: Annotated[int, typer.Option(min=1, help="training samples (m = 2n unless --m)")] = 100,
    m: Annotated[int | None, typer.Option(min=2, help="candidates")] = None,
    dtype: Annotated[
        str, typer.Option(help="float32 | float64 | bfloat16 (bf16 products, float32 state)")
    ] = "float32",
    threads: Annotated[int, typer.Option(min=1)] = 1,
    population: Annotated[int, typer.Option(min=1, help="settings batched in one step")] = 1,
    repeats: Annotated[int, typer.Option(min=1)] = 5,
    reference: Annotated[bool, typer.Option(help="also time the reference formulation")] = True,
    compile_step: Annotated[bool, typer.Option("--compile", help="through torch.compile")] = False,
    residual: Annotated[
        str,
        typer.Option(
            help="attack.residual: auto (the attack's default: the cheaper route per layer, explicit in "
            "bfloat16) | explicit | gram"
        ),
    ] = "auto",
    classes: Annotated[int, typer.Option(min=1, help="network outputs (C >= 2: multiclass attack)")] = 1,
    arch: Annotated[str, typer.Option(help="mlp | cnn (--channels, --kernel, --pool)")] = "mlp",
    engine: Annotated[str, typer.Option(help="auto | closed | autograd (attack.engine)")] = "auto",
    channels: Annotated[str, typer.Option(help="CNN: channels per convolution, e.g. 32,32")] = "64",
    kernel: Annotated[int, typer.Option(min=1, help="CNN: kernel side")] = 3,
    pool: Annotated[str, typer.Option(help="CNN: 2x2 avg | max | none after each convolution")] = "none",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    time_to_quality: Annotated[
        int | None,
        typer.Option(
            help="instead: race bench against the reference procedure for this many reference steps"
        ),
    ] = None,
    tracking_uri: UriOpt = None,
    device: Annotated[
        str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps (auto: a CUDA GPU if any)")
    ] = "auto",
) -> None:
    """Time the attack step against the reference formulation and the GEMM peak; log to experiment `perf`."""
    import json

    try:
        _probe(tracking_uri)
        from bench.device import configure

        dev, _ = configure(device, threads)
    except BenchInputError as e:
        _fail_input(e)
    from bench.perf import format_report, log_report, measure

    if time_to_quality is not None:
        from bench.race import time_to_quality as race

        result = race(reference_steps=time_to_quality, threads=threads, device=str(dev))
        out = result.as_dict()
        typer.echo(json.dumps(out if as_json else {k: v for k, v in out.items() if "curve" not in k}))
        return
    try:
        opts = {"reference": reference, "method": residual, "device": str(dev), "compiled": compile_step}
        opts |= {"classes": classes, "arch": arch, "engine": engine, "channels": channels}
        opts |= {"kernel": kernel, "pool": pool}
        report = measure(depth, width, d, n, m, dtype, threads, population, repeats, **opts)
        log_report(report, tracking_uri)
    except BenchInputError as e:
        _fail_input(e)
    typer.echo(json.dumps(report.as_dict()) if as_json else format_report(report))


@app.command()
def tune(
    task: Annotated[str, typer.Argument(help="task name (see `bench list`)")],
    stage: Annotated[
        str,
        typer.Option(
            "--stage", help="classifier (lowest training loss) | attack | both (classifier, then attack)"
        ),
    ] = "attack",
    n_trials: Annotated[
        int,
        typer.Option("--n-trials", "-n", help="the study's TOTAL target of finished trials (rerun = resume)"),
    ] = 20,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="seconds after which this process starts no new trial")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage: an RDB URL (postgresql+psycopg2://U:P@HOST/DB) or journal:PATH "
            "(default: a journal file mlruns/optuna/<study>.journal beside the tracking store)",
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option("--study", help="study name (default TASK-PROFILE-STAGE; NAME-STAGE for both)"),
    ] = None,
    n_jobs: Annotated[
        int, typer.Option("--n-jobs", "-j", help="trials run in parallel threads of this process")
    ] = 1,
    objective: Annotated[
        str, typer.Option("--objective", help="attack stage: oracle (the run's error) | kkt (KKT residual)")
    ] = "oracle",
    sampler: Annotated[str, typer.Option("--sampler", help="tpe | random | grid")] = "tpe",
    pruner: Annotated[str, typer.Option("--pruner", help="median | none")] = "median",
    seed: Annotated[
        int | None, typer.Option("--seed", help="sampler seed (one process; omit for workers)")
    ] = None,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help="search KEY=log:LOW:HIGH | float:LOW:HIGH | int:LOW:HIGH | cat:A,B | off (repeatable)",
        ),
    ] = None,
    heartbeat: Annotated[
        int, typer.Option(help="seconds between trial heartbeats; silent 3x as long = dead, retried")
    ] = 10,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            help="attack stage: P trials at once as one batched attack (searches attack.lr, "
            "init_scale, lam_min, alpha only)",
        ),
    ] = 1,
    profile: ProfileOpt = "quick",
    set_: SetOpt = None,
    tracking_uri: UriOpt = None,
    experiment: ExpOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Search classifier and/or attack hyperparameters with Optuna (see docs/tuning.md)."""
    from bench.tune import TuneError, TuneOptions, parse_space, tune

    try:
        _probe(tracking_uri)
        opts = TuneOptions(
            task=task,
            stage=stage,
            n_trials=n_trials,
            timeout=timeout,
            storage=storage,
            study=study,
            n_jobs=n_jobs,
            objective=objective,
            sampler=sampler,
            pruner=pruner,
            seed=seed,
            profile=profile,
            overrides=_with_device(_overrides(set_), device),
            space=parse_space(space),
            tracking_uri=tracking_uri,
            experiment=experiment,
            heartbeat=heartbeat,
            batch=batch,
        )
        results = tune(opts, echo=lambda line: typer.echo(line, err=True))
    except BenchInputError as e:
        _fail_input(e)
    except KeyboardInterrupt:
        typer.echo("interrupted: the running trials are FAILED and enqueued again; rerun to resume", err=True)
        raise typer.Exit(1) from None
    except Exception as e:
        typer.echo(f"tune failed: {e if isinstance(e, TuneError) else f'{type(e).__name__}: {e}'}", err=True)
        raise typer.Exit(1) from None
    from bench.console import print_tune_results

    print_tune_results(results)


@app.command()
def report(
    out: Annotated[
        str, typer.Option("--out", "-o", help="folder for report.md, report.html, report.json")
    ] = "report",
    tracking_uri: UriOpt = None,
    experiment: Annotated[
        list[str] | None,
        typer.Option("--experiment", help="read the runs of this experiment only (repeatable; default: all)"),
    ] = None,
    run_ids: Annotated[
        list[str] | None, typer.Option("--run", help="read the children of this parent run only (repeatable)")
    ] = None,
    claims: Annotated[bool, typer.Option("--claims", help="list the claims and exit")] = False,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="log the files to MLflow experiment 'report'")
    ] = True,
) -> None:
    """Judge every claim of the paper (and four from the literature) on the runs in the store."""
    from bench.analysis.report import claims_listing, run_report

    if claims:
        typer.echo(claims_listing())
        return
    try:
        rep, paths, run_id = run_report(out, tracking_uri, experiment, run_ids, log)
    except BenchInputError as e:
        _fail_input(e)
    if rep.runs.empty:  # an existing store, but nothing of bench's to judge: say so before the verdicts
        typer.echo(
            f"no finished bench runs in {rep.source}: every claim is 'no runs'; fix: run a task first "
            "(bench run TASK), or check --tracking-uri, --experiment and --run"
        )
    for v in rep.verdicts:
        typer.echo(f"{v.claim:32s} {v.verdict:15s} {v.bench[:90]}")
    typer.echo(
        f"wrote {paths[0]} and {paths[1]} ({len(rep.runs)} runs)"
        + (f"; MLflow run {run_id}" if run_id else "")
    )
