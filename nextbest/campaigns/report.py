"""The readout page: ``readout.html`` beside the campaign's files, with conversion by arm and its 95 % CIs."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

from statsmodels.stats.proportion import proportion_confint

from nextbest.campaigns.files import atomic_save_png, atomic_write_json, atomic_write_text
from nextbest.campaigns.plan import CampaignPlan
from nextbest.campaigns.readout import Readout

READOUT_PAGE = "readout.html"
CONVERSION_PLOT = "conversion_by_arm.png"
LIFT_PLOT = "lift_over_time.png"
WINDOWS_FILE = "readout_windows.json"
"""The primary effect of each raw-holdings readout window, by window end (for the lift-over-time plot)."""


def arm_rates(readout: Readout) -> list[tuple[str, float, float, float]]:
    """(arm, conversion rate, 95 % Wilson CI low, high) of each compared arm."""
    tests = [readout.primary]
    if readout.versus_business_rule is not None:
        tests.append(readout.versus_business_rule)
    seen: dict[str, tuple[int, int]] = {}
    for t in tests:
        seen.setdefault(t.arm_a, (t.conversions_a, t.n_a))
        seen.setdefault(t.arm_b, (t.conversions_b, t.n_b))
    rows = []
    for arm, (x, n) in seen.items():
        lo, hi = proportion_confint(x, n, alpha=0.05, method="wilson")
        rows.append((arm, x / n, float(lo), float(hi)))
    return rows


def plot_conversion(readout: Readout, predicted: float, path: Path) -> None:
    """Bars of conversion by arm with 95 % CIs, and the control's predicted rate as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = arm_rates(readout)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = [r[0] for r in rows]
    rates = [r[1] for r in rows]
    errors = [[r[1] - r[2] for r in rows], [r[3] - r[1] for r in rows]]
    ax.bar(names, rates, yerr=errors, capsize=6, color=["#4878a8", "#a0a0a0", "#d08c40"][: len(rows)])
    ax.axhline(predicted, linestyle="--", color="black", linewidth=1, label="predicted (control)")
    ax.set_ylabel("conversion rate")
    ax.set_title("conversion by arm (95% CI)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_save_png(fig, path)
    plt.close(fig)


def record_window(directory: Path, window_end: str, readout: Readout) -> list[dict[str, Any]]:
    """Add (or replace) this window's relative lift and 95 % CI in ``WINDOWS_FILE``; all windows by end."""
    path = directory / WINDOWS_FILE
    windows = json.loads(path.read_text(encoding="utf-8"))["windows"] if path.is_file() else []
    primary = readout.primary
    entry = {
        "window_end": window_end,
        "relative_lift": primary.relative_lift,
        "relative_lift_ci": list(primary.relative_lift_ci),
    }
    kept = [w for w in windows if w["window_end"] != window_end]
    windows = sorted([*kept, entry], key=lambda w: w["window_end"])
    atomic_write_json({"windows": windows}, path)
    return windows


def plot_lift_over_time(windows: list[dict[str, Any]], path: Path) -> None:
    """The relative lift of treatment over control with its 95 % CI at each window end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends = [w["window_end"] for w in windows]
    lifts = [w["relative_lift"] for w in windows]
    errors = [
        [w["relative_lift"] - w["relative_lift_ci"][0] for w in windows],
        [w["relative_lift_ci"][1] - w["relative_lift"] for w in windows],
    ]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.errorbar(ends, lifts, yerr=errors, fmt="o-", capsize=5)
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_ylabel("relative lift (treatment / control - 1)")
    ax.set_title("lift over time (95% CI)")
    fig.tight_layout()
    atomic_save_png(fig, path)
    plt.close(fig)


def write_readout_page(
    directory: Path, plan: CampaignPlan, readout: Readout, windows: list[dict[str, Any]] | None = None
) -> Path:
    """``readout.html`` (the plan, the decision and every figure of the readout) and its plot(s): the lift
    over time too when ``windows`` holds several readout windows."""
    plot_conversion(readout, readout.calibration.predicted, directory / CONVERSION_PLOT)
    lift = ""
    if windows is not None and len(windows) > 1:
        plot_lift_over_time(windows, directory / LIFT_PLOT)
        lift = f"<img src='{LIFT_PLOT}' alt='lift over time'>"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in plan.lines())
    found = "".join(f"<li>{html.escape(line)}</li>" for line in readout.lines()[1:])
    verdict = html.escape(readout.decision.verdict.upper())
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>campaign readout</title></head><body>"
        f"<h1>Campaign readout: {verdict}</h1><h2>Plan</h2><ul>{items}</ul>"
        f"<h2>Readout</h2><ul>{found}</ul><img src='{CONVERSION_PLOT}' alt='conversion by arm'>{lift}"
        "</body></html>\n"
    )
    path = directory / READOUT_PAGE
    atomic_write_text(page, path)
    return path


def copy_beside_training_report(reports: Path, model: str, directory: Path) -> Path | None:
    """Copy the readout page and its plot to ``reports/<model>/campaigns/<campaign>/``, beside the training
    report of the bundle that chose the audience; None when that report does not exist (e.g. a scores file).
    """
    report_dir = reports / model
    if not report_dir.is_dir():
        return None
    target = report_dir / "campaigns" / directory.name
    target.mkdir(parents=True, exist_ok=True)
    for name in (READOUT_PAGE, CONVERSION_PLOT, LIFT_PLOT):
        if (directory / name).is_file():
            shutil.copyfile(directory / name, target / name)
    return target / READOUT_PAGE
