"""``nextbest train`` and ``nextbest evaluate``: parse options, show progress, delegate to ``training``.

``app`` holds both commands; the root command mounts it without a name, so they are top-level
(``nextbest train`` / ``nextbest evaluate``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from nextbest.settings import Settings, TrainingEngine, get_settings

app = typer.Typer(help="Train and evaluate the ranker.", no_args_is_help=True)
console = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", exists=True, dir_okay=False,
        help="Training config YAML (default: training/configs/<synthetic|completejourney>.yaml "
        "from the ingested dataset's name, training/configs/default.yaml for any other dataset).",
    ),
]


def resolve_config_path(settings: Settings, config: Path | None, console: Console = console) -> Path:
    """``config`` if given, else the shipped config of the ingested dataset (dataset.json name; the
    documented ``default.yaml`` when the name matches no shipped config); says which one it chose."""
    if config is not None:
        return config
    from nextbest.ingest.store import read_dataset_meta
    from nextbest.training.config import DEFAULT_FAMILY, dataset_family, default_config_path

    name = read_dataset_meta(settings.raw_dir).name
    path = default_config_path(name)
    why = (
        "no shipped config for this dataset: the default one"
        if dataset_family(name) == DEFAULT_FAMILY
        else "the shipped config of its family"
    )
    console.print(f"no --config: dataset {name!r} -> {path.name} ({why})")
    return path


def run_training(settings: Settings, config_path: Path, console: Console = console) -> int:
    """Train with progress lines and a spinner; print the summary; return the exit code (1 = regression)."""
    return train_ranker(settings, config_path, console)[0]


def train_ranker(settings: Settings, config_path: Path, console: Console = console) -> tuple[int, Any]:
    """``run_training``'s work: the exit code and the ``TrainResult`` (None when it failed)."""
    from feast.errors import FeatureServiceNotFoundException, FeatureViewNotFoundException

    from nextbest.training.config import ConfigError, load_config
    from nextbest.training.report import details_text, load_report, summary_table
    from nextbest.training.train import QualityRegressionError, train

    config = load_config(config_path)
    console.print(f"training with [bold]{config_path}[/bold] on {settings.home}")
    started = time.perf_counter()
    with console.status("training...") as status:

        def progress(message: str) -> None:
            status.update(escape(message))
            console.log(f"{time.perf_counter() - started:7.1f}s  {escape(message)}")

        try:
            result = train(settings, config, progress)
        except QualityRegressionError as err:
            console.print(f"[red]{err}[/red]")
            return 1, None
        except ConfigError as err:
            console.print(f"[red]{config_path}: {escape(str(err))}[/red]")
            return 2, None
        except (FeatureServiceNotFoundException, FeatureViewNotFoundException) as err:
            console.print(
                f"[red]{escape(str(err))} (feature store in {settings.feast_dir}): run `nextbest build` "
                "without --no-feast (it applies the Feast definitions and materializes) first[/red]"
            )
            return 2, None
    console.print(summary_table(result.evaluation.models.to_dict(orient="index")))
    console.print(details_text(load_report(result.report_dir)), markup=False)
    console.print(f"report: {result.report_dir / 'report.html'}")
    console.print(f"bundle: {result.bundle_path}")
    return 0, result


def show_evaluation(settings: Settings, reevaluate: bool, console: Console = console) -> int:
    """Print the latest bundle's summary table (from its report, or re-evaluated); exit code."""
    from nextbest.training.artifacts import latest_bundle
    from nextbest.training.report import details_text, load_report, reports_dir, summary_table

    bundle_path = latest_bundle(settings.models_dir)
    if bundle_path is None:
        console.print(f"[red]no model bundle in {settings.models_dir}: run `nextbest train` first[/red]")
        return 1
    console.print(f"bundle: {bundle_path}")
    if reevaluate:
        from nextbest.training.train import evaluate_bundle

        with console.status("re-evaluating on the test month...") as status:
            _, table = evaluate_bundle(settings, bundle_path, progress=status.update)
        console.print(summary_table(table.to_dict(orient="index")))
        return 0
    report = load_report(reports_dir(settings) / bundle_path.name)
    console.print(summary_table(report["models"]))
    console.print(details_text(report), markup=False)
    for failure in report.get("failures", []):
        console.print(f"[red]{failure}[/red]")
    return 0


def run_task_training(settings: Settings, task: str, config_path: Path, console: Console = console) -> int:
    """Train a classification task (``nextbest.training.tasks``), or with ``all`` every task of the
    manifest (the classification tasks on one retrieval of the customer features, then the ranking);
    progress lines, each task's table; for ``all`` the features shared across tasks and the times."""
    from nextbest.training.config import load_config
    from nextbest.training.tasks import (
        ALL_TASKS,
        RANKING_TASK,
        customer_feature_count,
        task_spec,
        task_specs,
        train_tasks,
    )

    config = load_config(config_path)
    specs = task_specs(settings) if task == ALL_TASKS else {task: task_spec(settings, task)}
    classification = [spec for name, spec in specs.items() if name != RANKING_TASK]
    started = time.perf_counter()

    def progress(message: str) -> None:
        console.log(f"{time.perf_counter() - started:7.1f}s  {escape(message)}")

    results = train_tasks(settings, classification, config, progress) if classification else []
    for result in results:
        for line in result.lines():
            console.print(line, markup=False)
        console.print(f"bundle: {result.bundle_path}")
    classified = time.perf_counter() - started
    if RANKING_TASK not in specs:
        return 0
    code, ranked = train_ranker(settings, config_path, console)
    if ranked is None:
        return code
    shared = customer_feature_count(results)
    counts = ", ".join(f"{r.spec.name} {len(r.model.feature_cols)}" for r in results)
    shared_with_ranker = len(set.intersection(
        set(ranked.bundle.feature_cols), *(set(r.model.feature_cols) for r in results)
    ))
    retrieval = results[0].seconds["retrieval"] if results else 0.0
    console.print(
        f"features shared across tasks: {shared_with_ranker} read by all {len(results) + 1} tasks "
        f"({shared} by the classification tasks; features per task: {counts}, {RANKING_TASK} "
        f"{len(ranked.bundle.feature_cols)})"
    )
    console.print(
        f"time: {len(results)} classification task(s) {classified:.1f}s (one customer-feature retrieval "
        f"{retrieval:.1f}s), {RANKING_TASK} {time.perf_counter() - started - classified:.1f}s, "
        f"total {time.perf_counter() - started:.1f}s"
    )
    return code


EngineOption = Annotated[
    TrainingEngine | None,
    typer.Option(
        "--engine",
        help="Where the ranker is fitted: local (this process) or dask (DaskLGBMRanker on --scheduler, "
        "else a LocalCluster); default: NEXTBEST_TRAINING_ENGINE, else local.",
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler", help="The Dask scheduler's address, e.g. tcp://10.0.0.5:8786 (with --engine dask)."
    ),
]


def with_engine(settings: Settings, engine: str | None, scheduler: str | None) -> Settings:
    """``settings`` with the command line's training engine and scheduler, where given."""
    update = {k: v for k, v in (("engine", engine), ("dask_scheduler", scheduler)) if v is not None}
    if not update:
        return settings
    return settings.model_copy(update={"training": settings.training.model_copy(update=update)})


TaskOption = Annotated[
    str | None,
    typer.Option(
        "--task",
        help="A task declared by a dbt label model (meta.task), e.g. churn or category_propensity; all = "
        "every task (one retrieval of the customer features); default: the product ranking.",
    ),
]


@app.command("train")
def train_command(
    config: ConfigOption = None,
    task: TaskOption = None,
    engine: EngineOption = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Train the ranker, its calibrators and the baselines; evaluate; save the bundle and the report.

    With ``--task NAME`` (not the ranking's ``product_propensity``): the classification task a dbt label
    model declares, on the same FeatureService's customer features; ``--task all``: every task.
    ``--engine dask [--scheduler ADDRESS]``: the ranker on a Dask cluster (settings ``training``)."""
    from nextbest.training.tasks import RANKING_TASK

    settings = with_engine(get_settings(), engine, scheduler)
    config_path = resolve_config_path(settings, config)
    if task is not None and task != RANKING_TASK:
        raise typer.Exit(run_task_training(settings, task, config_path))
    raise typer.Exit(run_training(settings, config_path))


def show_task_evaluation(
    settings: Settings, task: str, reevaluate: bool, config: Path | None, console: Console = console
) -> int:
    """Print the latest bundle of a classification task: its saved evaluation, or re-evaluated on its
    test months now (``reevaluate_task_bundle``); exit code."""
    from nextbest.training.config import load_config
    from nextbest.training.tasks import evaluation_lines, latest_task_bundle, load_task_bundle, task_spec
    from nextbest.training.tasks import reevaluate_task_bundle as reevaluate_bundle

    spec = task_spec(settings, task)
    path = latest_task_bundle(settings, task)
    if path is None:
        console.print(f"[red]no bundle of task {task} in {settings.models_dir}: run "
                      f"`nextbest train --task {task}` first[/red]")
        return 1
    console.print(f"bundle: {path}")
    model, meta = load_task_bundle(path)
    evaluation = meta["evaluation"]
    if reevaluate:
        service = load_config(resolve_config_path(settings, config, console)).feature_service
        with console.status("re-evaluating on the test months...") as status:
            evaluation = reevaluate_bundle(settings, spec, path, service, progress=status.update)
    for line in evaluation_lines(spec, evaluation, model.best_iteration):
        console.print(line, markup=False)
    return 0


@app.command("evaluate")
def evaluate_command(
    reevaluate: Annotated[
        bool, typer.Option("--reevaluate", help="Re-score the latest bundle on its test month now.")
    ] = False,
    task: TaskOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the latest bundle's metrics table (ranker vs every baseline); ``--task NAME``: the latest
    bundle of that classification task (``--config``: the feature service to re-evaluate with)."""
    from nextbest.training.tasks import RANKING_TASK

    settings = get_settings()
    if task is not None and task != RANKING_TASK:
        raise typer.Exit(show_task_evaluation(settings, task, reevaluate, config))
    raise typer.Exit(show_evaluation(settings, reevaluate))

