"""``nextbest features apply | materialize | status``: parse options, delegate to ``nextbest.features.store``.

``app`` is mounted by the root command as ``nextbest features``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from nextbest.settings import get_settings

app = typer.Typer(help="The Feast feature store built from the dbt models.", no_args_is_help=True)
console = Console()


@app.command("apply")
def features_apply() -> None:
    """Register entities, sources, feature views and the FeatureService from the last dbt build."""
    from nextbest.features.store import apply_definitions

    definitions = apply_definitions(get_settings())
    console.print(
        f"[green]applied[/green] {len(definitions.views)} feature views, service {definitions.service.name} "
        f"({len(definitions.feature_names)} features)"
    )


@app.command("materialize")
def features_materialize(
    full: Annotated[bool, typer.Option(help="Backfill every view from its first snapshot.")] = False,
) -> None:
    """Load the latest row per key into the online store (full backfill on a fresh store)."""
    from nextbest.features.store import materialize

    for run in materialize(get_settings(), progress=True, full=full):
        console.print(f"{run.view:<28} {run.mode:<12} {run.start} -> {run.end}  {run.seconds:.1f}s")


@app.command("status")
def features_status() -> None:
    """Feature views, offline rows and range, online freshness."""
    from nextbest.features.store import status

    for st in status(get_settings()):
        console.print(
            f"{st.view:<28} {st.offline_rows:>12,} rows  {st.offline_min_ts} .. {st.offline_max_ts}  "
            f"online until {st.online_until} ({'current' if st.online_is_current else 'BEHIND'})"
        )
