"""The evaluation report: ``report.json`` (every number) and ``report.html`` with PNG plots.

Written to ``<NEXTBEST_HOME>/reports/<bundle version>/``: overall metrics of the ranker and every
baseline, a sortable per-product table (nDCG / recall / AUC / ECE and the ranker-minus-per-product
difference), the products won against the per-product models, the metrics of cold-start customers
(owning nothing) and of the rest, reliability diagrams, a gains chart (recall@k by k), the ranker's
gain-based feature importance per feature and per feature group, the feature selection on the validation
months and the feature-group ablation. ``summary_table`` renders the overall metrics as text for the
terminal and ``details_text`` the feature-selection, ablation, product-win and cold-start sections
(``nextbest evaluate``).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nextbest.settings import Settings
from nextbest.training.constants import DEFAULT_K
from nextbest.training.evaluate import COLD_START_FEATURE, WIN_MIN_POSITIVES, Evaluation, importance_table

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
MAX_RELIABILITY_PANELS = 24
"""Reliability diagrams drawn for at most this many products (those with the most positives)."""

SUMMARY_METRICS = ("ndcg@1", "ndcg@3", "ndcg@7", "map@7", "recall@1", "precision@1", "ece", "log_loss")


def reports_dir(settings: Settings) -> Path:
    """Where reports are written, one sub-directory per bundle version."""
    return settings.home / "reports"


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(df: pd.DataFrame, index_name: str) -> list[dict[str, Any]]:
    return _clean(df.reset_index(names=index_name).to_dict(orient="records"))


def report_payload(evaluation: Evaluation, context: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document of a report (NaN as null)."""
    return _clean(
        {
            "context": dict(context),
            "models": evaluation.models.to_dict(orient="index"),
            "metrics": evaluation.flat,
            "per_product": _records(evaluation.per_product, "product_id"),
            "reliability": {p: c.to_dict(orient="list") for p, c in evaluation.reliability.items()},
            "gains": evaluation.gains.to_dict(orient="list"),
            "drift": _records(evaluation.drift, "snapshot"),
            "feature_importance": evaluation.feature_importance.to_dict(),
            "feature_groups": dict(evaluation.feature_groups),
            "feature_importance_groups": _records(evaluation.importance_groups, "group"),
            "ablation": _records(evaluation.ablation, "group"),
            "feature_selection": _records(evaluation.feature_selection, "group"),
            "product_wins": _records(evaluation.product_wins, "product_id"),
            "cold_start": {
                "feature": COLD_START_FEATURE,
                "note": evaluation.segment_note,
                "segments": {s: t.to_dict(orient="index") for s, t in evaluation.segments.items()},
                "per_product": _records(evaluation.cold_start_per_product, "product_id"),
            },
            "oracle_gap": list(evaluation.oracle_gap) if evaluation.oracle_gap else None,
            "failures": list(evaluation.failures),
        }
    )


def load_report(report_dir: Path) -> dict[str, Any]:
    """Read ``report.json`` of a report directory (FileNotFoundError if absent)."""
    path = Path(report_dir) / REPORT_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no {REPORT_JSON} in {report_dir}")
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- text


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def summary_table(models: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] = SUMMARY_METRICS) -> str:
    """A fixed-width text table: one row per model, one column per metric ("-" when absent).

    Args:
        models: model -> metric -> value (``report.json``'s ``models``).
        metrics: the columns, in order.
    """
    return _text_table([{"model": name, **values} for name, values in models.items()], ["model", *metrics])


def _text_table(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Records as a fixed-width table: first column left-aligned, the others right, "-" when absent."""
    rows = [[_fmt(r.get(c)) for c in columns] for r in records]
    widths = [max(len(r[i]) for r in [list(columns), *rows]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    lines = [line(r) for r in [list(columns), *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _oracle_gains_text(flat: Mapping[str, Any], k: int) -> list[str]:
    """One line (synthetic data): each model's expected DCG@k over the oracle's, every test group."""
    suffix = f".expected_dcg@{k}_over_oracle"
    shares = [(key.removesuffix(suffix), value) for key, value in flat.items() if key.endswith(suffix)]
    if not shares:
        return []
    listed = ", ".join(f"{model} {_fmt(value)}" for model, value in shares)
    return [
        f"expected DCG@{k} over the oracle's (its probabilities as gains, every test group): {listed}",
        "",
    ]


def _refit_text(flat: Mapping[str, Any], k: int) -> list[str]:
    """One line: the test nDCG@k of the ranker before and after its refit on the validation months."""
    before = flat.get(f"ranker.before_refit.ndcg@{k}")
    if before is None:
        return []
    diff = flat.get(f"ranker.ndcg@{k}_minus_before_refit")
    se = flat.get(f"ranker.ndcg@{k}_minus_before_refit_se")
    return [
        f"refit on training + validation months: test nDCG@{k} {_fmt(before)} before -> "
        f"{_fmt(flat.get(f'ranker.ndcg@{k}'))} (diff {_fmt(diff)}, paired s.e. {_fmt(se)})",
        "",
    ]


def _ablation_reference(flat: Mapping[str, Any], k: int) -> str:
    """The full ranker the ablation's refits are compared with: its test nDCG@k, and which ranker it is."""
    before = flat.get(f"ranker.before_refit.ndcg@{k}")
    if before is None:
        return _fmt(flat.get(f"ranker.ndcg@{k}"))
    return f"{_fmt(before)}, the ranker before its refit on the validation months"


def _ablation_text(report: Mapping[str, Any], k: int) -> list[str]:
    ablation = report.get("ablation") or []
    if not ablation:
        return []
    full = _ablation_reference(report.get("metrics", {}), k)
    cols = ["group", "n_features", f"ndcg@{k}_without", f"ndcg@{k}_diff", f"ndcg@{k}_diff_se", "diff_over_se"]
    return [
        f"feature-group ablation: the ranker refitted without each group (full nDCG@{k} {full}); "
        "diff = without - full, s.e. paired over the test groups",
        _text_table(ablation, cols),
        "",
    ]


def _selection_text(report: Mapping[str, Any], k: int) -> list[str]:
    selection = report.get("feature_selection") or []
    if not selection:
        return []
    dropped = [r["group"] for r in selection if r.get("dropped")]
    cols = ["group", "n_features", f"valid_ndcg@{k}_diff", f"valid_ndcg@{k}_diff_se", "best_iteration"]
    cols.append("dropped")
    verdict = f"dropped: {', '.join(dropped)}" if dropped else "every group kept"
    return [
        f"feature selection on the validation months ({verdict}): the ranker refitted without each group; "
        "diff = without - full over the validation groups, s.e. paired",
        _text_table(selection, cols),
        "",
    ]


_WIN_COLS = [
    "product_id", "positives", "ndcg", "per_product_ndcg", "ndcg_diff", "ndcg_diff_se", "auc_diff", "won"
]


def _wins_text(report: Mapping[str, Any], max_products: int) -> list[str]:
    wins = report.get("product_wins") or []
    if not wins:
        return []
    metrics = report.get("metrics", {})
    share = f"ranker.share_products_won_vs_per_product_min{WIN_MIN_POSITIVES}"
    eligible = int(metrics.get(f"products_min{WIN_MIN_POSITIVES}", 0))
    won = int(metrics.get("ranker.products_won_vs_per_product", 0))
    shown = wins[:max_products]
    share_auc = f"ranker.share_products_won_auc_vs_per_product_min{WIN_MIN_POSITIVES}"
    n = WIN_MIN_POSITIVES
    won_2se = f"ranker.products_won_2se_vs_per_product_min{WIN_MIN_POSITIVES}"
    lost_2se = f"ranker.products_lost_2se_vs_per_product_min{WIN_MIN_POSITIVES}"
    return [
        f"{share} = {_fmt(metrics.get(share))} ({eligible} product(s) with >= {WIN_MIN_POSITIVES} "
        f"test positives; {won} of {len(wins)} products won in all)",
        f"{share_auc} = {_fmt(metrics.get(share_auc))} (AUC of each product's scores over its candidates: "
        "whom to target, the per-product models' own task)",
        f"of these, won by more than 2 s.e.: {_fmt(metrics.get(won_2se))}, lost by more than 2 s.e.: "
        f"{_fmt(metrics.get(lost_2se))} (the rest within noise)",
        f"nDCG@k contributions (shares of one list per customer) of the products with >= {WIN_MIN_POSITIVES} "
        f"test positives / the rest: ranker {_fmt(metrics.get(f'ranker.ndcg_contribution_min{n}'))} / "
        f"{_fmt(metrics.get(f'ranker.ndcg_contribution_below{n}'))}, per-product models "
        f"{_fmt(metrics.get(f'per_product.ndcg_contribution_min{n}'))} / "
        f"{_fmt(metrics.get(f'per_product.ndcg_contribution_below{n}'))}",
        "per-product models: one LightGBM per product, Platt-calibrated per product on the validation "
        "months so that one customer's products are compared on one probability scale",
        f"ranker vs per-product models by product, most test positives first ({len(shown)} of {len(wins)}; "
        "ndcg_diff_se paired over the test groups):",
        _text_table(shown, [c for c in _WIN_COLS if any(c in row for row in shown)]),
        "",
    ]


def _cold_start_text(report: Mapping[str, Any], k: int) -> list[str]:
    cold = report.get("cold_start") or {}
    metrics = report.get("metrics", {})
    counts = [
        f"{s}: {int(metrics[f'{s}.groups'])} groups, {int(metrics.get(f'{s}.groups_with_positive', 0))} "
        "with an adoption"
        for s in ("cold_start", "warm")
        if f"{s}.groups" in metrics
    ]
    if not cold:
        return []
    out = [f"cold start ({cold.get('feature', COLD_START_FEATURE)} == 0) vs warm; " + "; ".join(counts)]
    if cold.get("note"):
        out.append(cold["note"])
    columns = ("ndcg@1", "ndcg@3", f"ndcg@{k}", f"map@{k}", f"recall@{k}", "ece")
    for segment, models in (cold.get("segments") or {}).items():
        out += [f"{segment}:", summary_table(models, columns)]
    return out


def _retrieval_text(report: Mapping[str, Any], k: int) -> list[str]:
    retrieval = report.get("context", {}).get("candidate_retrieval")
    if not retrieval:
        return []
    recall = "n/a" if retrieval["recall"] is None else f"{retrieval['recall']:.1%}"
    suffix = f".ndcg@{k}_end_to_end"
    metrics = report.get("metrics", {})
    end_to_end = {key.removesuffix(suffix): value for key, value in metrics.items() if key.endswith(suffix)}
    out = [
        "candidate retrieval (dbt, a large catalogue): the test snapshots' candidates hold "
        f"{retrieval['adoptions_retrieved']:,} of their {retrieval['adoptions']:,} adoptions "
        f"(recall {recall}); the other metrics are over the retrieved candidates"
    ]
    if end_to_end:
        out.append(
            f"end-to-end nDCG@{k} (the adoptions left out count as never found): "
            + ", ".join(f"{model} {_fmt(value)}" for model, value in end_to_end.items())
        )
        out.append(
            "the baselines are fitted on the retrieved rows too: a product near the cut-off is retrieved "
            "only for customers who own the more popular ones, so its adoption rate there is not the "
            "catalogue's (popularity suffers most); to compare with them over the whole catalogue, build "
            "with the stage off (candidate_retrieval_above_products: null)"
        )
    return out


def details_text(report: Mapping[str, Any], max_products: int = 20) -> str:
    """The ablation, per-product-win and cold-start sections of a ``report.json`` as terminal text
    (at most ``max_products`` products; every one is in the report)."""
    k = int(report.get("context", {}).get("k", DEFAULT_K))
    flat = report.get("metrics", {})
    lines = _retrieval_text(report, k) + _oracle_gains_text(flat, k) + _refit_text(flat, k)
    lines += _selection_text(report, k)
    lines += _ablation_text(report, k)
    lines += _wins_text(report, max_products)
    lines += _cold_start_text(report, k)
    return "\n".join(lines).rstrip()


# --------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reliability(
    reliability: Mapping[str, pd.DataFrame], positives: Mapping[str, int], path: Path
) -> None:
    """Small-multiple reliability diagrams (mean predicted vs observed rate per bin) of the products
    with the most positives (at most ``MAX_RELIABILITY_PANELS``)."""
    plt = _plt()
    products = sorted(reliability, key=lambda p: (-positives.get(p, 0), p))[:MAX_RELIABILITY_PANELS]
    cols = min(6, max(1, len(products)))
    rows = max(1, math.ceil(len(products) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), squeeze=False)
    for ax, product in zip(axes.flat, products, strict=False):
        curve = reliability[product]
        top = max(float(curve["mean_prob"].max()), float(curve["observed_rate"].max()), 0.01) * 1.1
        ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--")
        ax.plot(curve["mean_prob"], curve["observed_rate"], marker="o", ms=3)
        ax.set_title(product, fontsize=8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(products):]:
        ax.axis("off")
    fig.supxlabel("mean calibrated probability")
    fig.supylabel("observed adoption rate")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_gains(gains: pd.DataFrame, path: Path) -> None:
    """Recall@k against k for every model (the share of adoptions found in the first k offers)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for model in [c for c in gains.columns if c != "k"]:
        ax.plot(gains["k"], gains[model], marker="o", ms=3, label=model)
    ax.set_xlabel("k (offers shown per customer)")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_importance(importance: pd.Series, path: Path, top: int = 30) -> None:
    """Horizontal bars of the ranker's top features by total gain."""
    plt = _plt()
    values = importance.sort_values(ascending=False).head(top)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(values) + 1))
    ax.barh(values.index.astype(str), values.to_numpy())
    ax.set_xlabel("total gain")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- html

_SORTER = """
<script>
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.asc !== 'true'; th.dataset.asc = asc;
  const key = r => { const t = r.cells[col].textContent; const n = parseFloat(t); return isNaN(n) ? t : n; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }).forEach(r => body.appendChild(r));
}));
</script>
"""
_STYLE = """<style>
body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right} th{background:#eee;cursor:pointer}
td:first-child,th:first-child{text-align:left} .neg{color:#b00} .pos{color:#070}
</style>"""


def _html_table(
    df: pd.DataFrame, index_name: str, sortable: bool = False, diff_cols: Sequence[str] = ()
) -> str:
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [index_name, *df.columns])
    body = []
    for idx, row in zip(df.index, df.to_dict(orient="records"), strict=True):  # keeps each column's type
        cells = [f"<td>{html.escape(str(idx))}</td>"]
        for col, value in row.items():
            css = ""
            if col in diff_cols and isinstance(value, float) and not math.isnan(value):
                css = ' class="pos"' if value > 0 else ' class="neg"' if value < 0 else ""
            cells.append(f"<td{css}>{html.escape(_fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_ablation(evaluation: Evaluation, context: Mapping[str, Any], k: int) -> str:
    if evaluation.ablation.empty:
        return "<p>No ablation (disabled in the training config, or no group to drop).</p>"
    full = _ablation_reference(evaluation.flat, k)
    return f"""<p>For each feature group, the ranker is refitted without the group's features on the same
training groups, with the same parameters and early stopping on the same validation groups, and scored
on the test month. <code>ndcg@{k}_diff</code> = without the group minus the full ranker ({full});
negative = the group helps. The s.e. is paired over the test groups with an adoption; |diff/se| &lt; 2 is
within noise. <code>product_id</code> is not ablated. Refits are capped at
{_fmt(context.get("ablation_n_estimators"))} trees; a <code>best_iteration</code> equal to the cap means
the refit was still improving.</p>
{_html_table(evaluation.ablation, "group", sortable=True, diff_cols=(f"ndcg@{k}_diff",))}"""


def _html_selection(evaluation: Evaluation, k: int) -> str:
    table = evaluation.feature_selection
    if table.empty:
        return "<p>No feature selection (disabled in the training config).</p>"
    return f"""<p>Before the test months are touched, the ranker is refitted without each feature group
(the ablation's refits) and scored on the validation groups; a group whose refit beats the full ranker
there by more than <code>feature_selection.min_gain_se</code> paired standard errors is
<code>dropped</code> and the ranker refitted without it (the ablation below is then that ranker's).</p>
{_html_table(table, "group", sortable=True, diff_cols=(f"valid_ndcg@{k}_diff",))}"""


def _html_wins(evaluation: Evaluation) -> str:
    if evaluation.product_wins.empty:
        return "<p>No per-product models in this run.</p>"
    share_key = f"ranker.share_products_won_vs_per_product_min{WIN_MIN_POSITIVES}"
    eligible = int(evaluation.flat.get(f"products_min{WIN_MIN_POSITIVES}", 0))
    share = evaluation.flat.get(share_key)
    summary = (
        f"The ranker wins on {share:.1%} of the {eligible} product(s) with at least {WIN_MIN_POSITIVES} "
        f"test adoptions (<code>{share_key}</code>)."
        if share is not None
        else f"No product has {WIN_MIN_POSITIVES} test adoptions: <code>{share_key}</code> is not computed."
    )
    return f"""<p>{summary} A product is won when the ranker's per-product nDCG
contribution exceeds the per-product models' (<code>ndcg_diff_se</code>: its standard error, paired over
the test groups; <code>auc_diff</code>: the ranker's AUC over the product's candidates minus the
per-product model's, whom to target). The per-product models are Platt-calibrated per product on the
validation months, so that they rank one customer's products on one probability scale. Every product,
most test adoptions first:</p>
{_html_table(evaluation.product_wins, "product_id", sortable=True, diff_cols=("ndcg_diff",))}"""


def _html_cold_start(evaluation: Evaluation) -> str:
    counts = ", ".join(
        f"{s}: {int(evaluation.flat[f'{s}.groups'])} groups "
        f"({int(evaluation.flat.get(f'{s}.groups_with_positive', 0))} with an adoption)"
        for s in ("cold_start", "warm")
        if f"{s}.groups" in evaluation.flat
    )
    parts = [
        f"<p>Cold-start groups: the customer owns nothing at the snapshot (<code>{COLD_START_FEATURE} == 0"
        f"</code>); warm: the rest. {html.escape(counts)}</p>"
    ]
    if evaluation.segment_note:
        parts.append(f"<p>{html.escape(evaluation.segment_note)}.</p>")
    for segment, table in evaluation.segments.items():
        parts.append(f"<h3>{html.escape(segment)}</h3>{_html_table(table, 'model')}")
    if len(evaluation.cold_start_per_product):
        cold = evaluation.cold_start_per_product.sort_values("positives", ascending=False)
        table = _html_table(cold, "product_id", sortable=True)
        parts.append(f"<h3>cold-start groups, per product</h3>{table}")
    return "\n".join(parts)


def _html(evaluation: Evaluation, context: Mapping[str, Any]) -> str:
    k = int(context.get("k", DEFAULT_K))
    importance = importance_table(evaluation.feature_importance, evaluation.feature_groups)
    lines = _oracle_gains_text(evaluation.flat, k) + _refit_text(evaluation.flat, k)
    notes = "".join(f"<p>{line}</p>" for line in lines if line)
    ctx = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(_clean(v)))}</td></tr>"
        for k, v in context.items()
    )
    failures = (
        "<h2>Expected metrics NOT met</h2><ul>"
        + "".join(f"<li>{html.escape(f)}</li>" for f in evaluation.failures)
        + "</ul>"
        if evaluation.failures
        else ""
    )
    gap = ""
    if evaluation.oracle_gap:
        diff, se = evaluation.oracle_gap
        gap = (
            f"<p>Ranker minus oracle nDCG (paired over test groups): {diff:+.4f} ± {se:.4f} (1 s.e.). "
            "A ranker above the oracle by more than 2 s.e. would mean leakage.</p>"
        )
    per_product = evaluation.per_product.sort_values("positives", ascending=False)
    title = "<title>nextbest evaluation</title>"
    return f"""<!doctype html><html><head><meta charset="utf-8">{title}{_STYLE}</head>
<body><h1>nextbest evaluation: {html.escape(str(context.get('dataset', '')))}</h1>
{failures}
<h2>Overall (test month{'s' if len(evaluation.drift) > 1 else ''}; every model on the same groups)</h2>
{_html_table(evaluation.models, "model")}
<p>MAP counts groups without an adoption as 0 (Kaggle); nDCG, recall and precision are over groups with
an adoption. ECE/Brier: the ranker's calibrated probability and the oracle's true probability only (the
classifier baselines are fitted on groups with an adoption, so their outputs are not calibrated).</p>
{gap}
<h2>Per product (click a header to sort)</h2>
<p><code>ndcg</code> = the product's contribution to mean nDCG@k; <code>*_diff</code> = ranker minus
one-model-per-product.</p>
{_html_table(per_product, "product_id", sortable=True, diff_cols=("ndcg_diff", "recall_diff", "auc_diff"))}
<h2>Ranker vs one model per product, by product</h2>
{_html_wins(evaluation)}
<h2>Cold-start customers</h2>
{_html_cold_start(evaluation)}
<h2>Gains: recall@k by k</h2><img src="gains.png">
<h2>Reliability of the calibrated probability</h2>
<p>Equal-count bins of each product's probability; the products with most adoptions.</p>
<img src="reliability.png">
<h2>Drift: ranker per test month</h2>{_html_table(evaluation.drift, "snapshot")}
<h2>Feature importance (gain)</h2>
<p>Total gain of the ranker's splits on each feature (at its best iteration), summed per feature group
(a column's <code>meta.feature_group</code> in the dbt yml, else its feature view).</p>
{_html_table(evaluation.importance_groups, "group")}
<img src="feature_importance.png">
{_html_table(importance, "feature", sortable=True)}
{notes}
<h2>Feature selection on the validation months</h2>
{_html_selection(evaluation, k)}
<h2>Feature-group ablation</h2>
{_html_ablation(evaluation, context, k)}
<h2>Context</h2><table>{ctx}</table>
{_SORTER}</body></html>
"""


def write_report(report_dir: Path, evaluation: Evaluation, context: Mapping[str, Any]) -> Path:
    """Write report.json, report.html and the PNGs into ``report_dir`` (created); return the HTML path."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    payload = report_payload(evaluation, context)
    (report_dir / REPORT_JSON).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    positives = evaluation.per_product["positives"].to_dict() if len(evaluation.per_product) else {}
    if evaluation.reliability:
        plot_reliability(evaluation.reliability, positives, report_dir / "reliability.png")
    plot_gains(evaluation.gains, report_dir / "gains.png")
    plot_importance(evaluation.feature_importance, report_dir / "feature_importance.png")
    out = report_dir / REPORT_HTML
    out.write_text(_html(evaluation, context), encoding="utf-8")
    return out
