"""The ``nextbest`` command: each stage's Typer app mounted here, plus the commands that span stages.

Mounted: ``nextbest ingest ...`` (``nextbest.ingest.cli``), ``nextbest features ...``
(``nextbest.features.cli``), ``nextbest train`` / ``evaluate`` (``nextbest.training.cli``) and
``nextbest serve`` / ``rank`` / ``score-batch`` (``nextbest.serving.cli``). Declared here, because they
run several stages: ``build`` (dbt, then Feast), ``summary`` and ``demo``. Every command only parses its
options and delegates to library code.

``main`` is the entry point (``[project.scripts]``): an error the user can fix (``nextbest.errors.UserError``,
or a missing file or step) ends in ONE line on stderr, ``nextbest: <what> ...``, and a non-zero exit:
1 when the dataset was rejected, a step failed or one is missing, 2 for other bad input or config. Typer's
own usage errors keep their box and exit 2. The traceback is shown only with ``nextbest --debug ...`` or
``NEXTBEST_DEBUG=1``; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nextbest.campaigns import cli as campaigns_cli
from nextbest.errors import UserError
from nextbest.features import cli as features_cli
from nextbest.ingest import cli as ingest_cli
from nextbest.retrieval import cli as retrieval_cli
from nextbest.serving import cli as serving_cli
from nextbest.settings import BuildVars, get_settings
from nextbest.training import cli as training_cli

app = typer.Typer(help="nextbest: one LambdaMART ranker for the next best product.", no_args_is_help=True)
app.add_typer(ingest_cli.app, name="ingest")
app.add_typer(features_cli.app, name="features")
app.add_typer(training_cli.app)
app.add_typer(serving_cli.app)
app.add_typer(campaigns_cli.app, name="campaign")
app.add_typer(retrieval_cli.app, name="retrieval")
console = Console()

THIRD_PARTY_NOISE = r"fetch_arrow_table\(\) is deprecated"
"""A DeprecationWarning raised inside ibis (used by Feast's DuckDB offline store) on every query."""

SPARK_STORE_NOISE = r"The spark (data source API|offline store) is an experimental feature"
"""A RuntimeWarning Feast raises for its SparkSources and Spark queries (``NEXTBEST_ENGINE=spark``): said
once in the README, not in every command's output."""


DEBUG_FLAG = "--debug"
DEBUG_ENV = "NEXTBEST_DEBUG"
"""Set to 1 (or pass ``nextbest --debug``) to see the traceback of a user error."""


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option(DEBUG_FLAG, help=f"Show the traceback of an error (also {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """nextbest: one LambdaMART ranker for the next best product."""
    warnings.filterwarnings("ignore", message=THIRD_PARTY_NOISE, category=DeprecationWarning)
    if os.environ.get("NEXTBEST_ENGINE") == "spark":
        # imported first: on import it puts `simplefilter("once", RuntimeWarning)` before every filter
        with contextlib.suppress(ImportError):  # without the spark extra, the engine's own check says so
            import feast.infra.offline_stores.contrib.spark_offline_store.spark  # noqa: F401
        warnings.filterwarnings("ignore", message=SPARK_STORE_NOISE, category=RuntimeWarning)


Horizon = Annotated[
    int | None,
    typer.Option(
        min=1, help="Label horizon in months [default: the previous build's, else dbt_project.yml's]."
    ),
]
Lookback = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Activity look-back for the snapshot population, months [default: the previous build's, "
        "else dbt_project.yml's].",
    ),
]


@app.command()
def build(
    horizon_months: Horizon = None,
    activity_lookback_months: Lookback = None,
    feast: Annotated[bool, typer.Option(help="Also apply the Feast definitions and materialize.")] = True,
) -> None:
    """dbt build (features, candidates, labels, tests), then Feast apply + materialize, then summarise.

    The build vars are kept beside the warehouse: a later ``nextbest build`` without them reuses them."""
    from nextbest.pipeline import build_warehouse

    settings = get_settings()
    chosen = settings.build.replace(
        horizon_months=horizon_months, activity_lookback_months=activity_lookback_months
    )
    console.print(f"build vars: {chosen.model_dump()}")
    build_warehouse(settings, chosen)
    summary()
    if feast:
        features_cli.features_apply()
        features_cli.features_materialize()


@app.command()
def summary() -> None:
    """Rows per mart, snapshots, candidates per group and the positive rate."""
    from nextbest.marts import FCT_CANDIDATES, existing_mart
    from nextbest.pipeline import summarize_warehouse

    settings = get_settings()
    existing_mart(settings, FCT_CANDIDATES)  # nothing built yet: one line saying to build
    for line in summarize_warehouse(settings).lines():
        console.print(line)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=1)] = 5_000,
    months: Annotated[int, typer.Option(min=3)] = 18,
    seed: int = 0,
) -> None:
    """The main job end to end on the embedded default (the synthetic bank)."""
    from nextbest.pipeline import latest_event_timestamp, sample_latest_customers

    settings = get_settings()
    ingest_cli.ingest_synthetic(customers=customers, months=months, seed=seed, oracle=True)
    defaults = BuildVars.defaults()  # the demo always builds with dbt_project.yml's vars
    build(defaults.horizon_months, defaults.activity_lookback_months)
    code = training_cli.run_training(settings, training_cli.resolve_config_path(settings, None))
    if code:
        raise typer.Exit(code)
    console.rule("ranked online (Feast online store -> candidates -> score -> calibrate)")
    # the synthetic bank is dated in the past: judge feature staleness as of its latest snapshot
    serving = settings.serving.model_copy(update={"as_of": latest_event_timestamp(settings)})
    for customer_id in sample_latest_customers(settings, n=3, seed=seed):
        serving_cli.rank(customer_id, k=5, settings=settings, serving=serving)


# ---------------------------------------------------------------- errors -> one line


STEP_FAILED = 1
"""Exit code: the dataset was rejected, a step (dbt, a service) failed or one has not run yet."""
BAD_INPUT = 2
"""Exit code: other bad input or configuration (Typer's usage errors exit 2 too)."""

_DBT_FAILED_NODE = re.compile(r"\b(?:Failure|Error) in (\w+) (\S+)")
"""dbt's summary line of a failed node, e.g. ``Failure in test not_null_x (models/x.yml)``."""


def _is_step_failure(err: BaseException) -> bool:
    from nextbest.dbt import DbtError
    from nextbest.ingest.contract import ContractError
    from nextbest.serving.errors import ServingError

    return isinstance(err, ContractError | DbtError | ServingError | FileNotFoundError)


def exit_code(err: BaseException) -> int:
    """The error's own ``exit_code`` attribute if it has one (a ``UserError`` subclass may set it), else
    ``STEP_FAILED`` for a rejected dataset, a failed or missing step, ``BAD_INPUT`` otherwise."""
    own = getattr(err, "exit_code", None)
    if isinstance(own, int):
        return own
    return STEP_FAILED if _is_step_failure(err) else BAD_INPUT


def _latest_dbt_log(warehouse_dir: Path) -> Path | None:
    """The most recently written ``dbt_logs/dbt.log`` under the warehouse (whatever the build layout)."""
    if not warehouse_dir.is_dir():
        return None
    logs = [p for p in warehouse_dir.rglob("dbt.log") if p.parent.name == "dbt_logs"]
    return max(logs, key=lambda p: p.stat().st_mtime, default=None)


def _last_run(log_text: str) -> str:
    """The part of a dbt log written by its last invocation."""
    start = log_text.rfind("Running with dbt=")
    return log_text if start < 0 else log_text[start:]


def dbt_failure_line(message: str, log_path: Path | None) -> str:
    """One line for a failed dbt run: its first line, the failing nodes (from the message, else the
    log's last run) and where the log is, e.g.
    ``dbt build failed (exit 1): failed test not_null_x; log: /home/warehouse/dbt_logs/dbt.log``."""
    if message and "\n" not in message:  # already one line, e.g. a locked warehouse naming the PID
        return message
    head = message.splitlines()[0].rstrip(":") if message else "dbt failed"
    found = _DBT_FAILED_NODE.findall(message)
    if not found and log_path is not None and log_path.is_file():
        found = _DBT_FAILED_NODE.findall(_last_run(log_path.read_text(encoding="utf-8", errors="replace")))
    nodes = list(dict.fromkeys(f"{kind} {name}" for kind, name in found))
    text = head
    if nodes:
        shown = ", ".join(nodes[:3]) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
        text += f": failed {shown}"
    if log_path is not None:
        text += f"; log: {log_path}"
    return text


def one_line(err: BaseException) -> str:
    """The error as one line: a contract error's first broken rule (and how many more), a dbt failure's
    failing nodes and log, else the message's lines joined."""
    from nextbest.dbt import DbtError
    from nextbest.ingest.contract import ContractError

    if isinstance(err, ContractError):
        more = len(err.violations) - 1
        also = f" (and {more} more broken rule{'s' if more > 1 else ''})" if more else ""
        return err.violations[0].headline() + also
    if isinstance(err, DbtError):
        log_path = getattr(err, "log_path", None) or _latest_dbt_log(get_settings().warehouse_dir)
        return dbt_failure_line(str(err), log_path)
    return " ".join(str(err).split()) or type(err).__name__


def debug_requested(argv: Sequence[str]) -> bool:
    """``--debug`` on the command line, or ``NEXTBEST_DEBUG`` set to anything but empty or 0."""
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``nextbest`` command; a user error ends in one line on stderr and a non-zero exit."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="nextbest")
    except (UserError, FileNotFoundError) as err:
        if debug_requested(args):
            raise
        print(f"nextbest: {one_line(err)} (details: nextbest {DEBUG_FLAG} ...)", file=sys.stderr)
        sys.exit(exit_code(err))
    except OSError as err:
        if err.errno not in DISK_FULL or debug_requested(args):
            raise
        _stdout_to_devnull()  # stdout may be the full disk: the interpreter's last flush would fail again
        where = f" writing {err.filename}" if err.filename else ""
        print(
            f"nextbest: no space left on the device{where}: free space on the disk of "
            f"{get_settings().home} (and of stdout, if redirected) and run the command again "
            f"(details: nextbest {DEBUG_FLAG} ...)",
            file=sys.stderr,
        )
        sys.exit(STEP_FAILED)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""OSError numbers of a full disk (or quota): an environment failure, said in one line like a user error."""


def _stdout_to_devnull() -> None:
    """Point file descriptor 1 at /dev/null, so that what stdout still buffers is dropped at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":
    main()
