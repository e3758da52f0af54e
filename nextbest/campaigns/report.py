"""The readout page: ``readout.html`` beside the campaign's files, with conversion by arm and its 95 % CIs."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

from statsmodels.stats.proportion import proportion_confint

from nextbest.campaigns.plan import CampaignPlan
from nextbest.campaigns.readout import Readout

READOUT_PAGE = "readout.html"
CONVERSION_PLOT = "conversion_by_arm.png"


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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_readout_page(directory: Path, plan: CampaignPlan, readout: Readout) -> Path:
    """``readout.html`` (the plan, the decision and every figure of the readout) and its plot."""
    plot_conversion(readout, readout.calibration.predicted, directory / CONVERSION_PLOT)
    items = "".join(f"<li>{html.escape(line)}</li>" for line in plan.lines())
    found = "".join(f"<li>{html.escape(line)}</li>" for line in readout.lines()[1:])
    verdict = html.escape(readout.decision.verdict.upper())
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>campaign readout</title></head><body>"
        f"<h1>Campaign readout: {verdict}</h1><h2>Plan</h2><ul>{items}</ul>"
        f"<h2>Readout</h2><ul>{found}</ul><img src='{CONVERSION_PLOT}' alt='conversion by arm'>"
        "</body></html>\n"
    )
    path = directory / READOUT_PAGE
    path.write_text(page, encoding="utf-8")
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
    for name in (READOUT_PAGE, CONVERSION_PLOT):
        shutil.copyfile(directory / name, target / name)
    return target / READOUT_PAGE
