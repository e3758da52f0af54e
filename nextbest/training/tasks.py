"""Tasks beyond the ranking, on the same point-in-time features: a task is a dbt label model.

A dbt model whose ``meta`` names a ``task`` is one (``entity``: ``customer``, ``customer_category`` or
``customer_product``; ``kind``: ``binary``, ``multi_label`` or ``ranking``); ``task_specs`` reads them
from the manifest of the build, so an analyst adds a task the way they add a feature: a label model in
SQL and its yml. ``fct_ranking_labels`` is the ``product_propensity`` ranking task
(``nextbest.training.train``); a binary customer task such as ``churn`` (``fct_churn_labels``) and the
multi-label customer x category task ``category_propensity`` (``fct_category_propensity_labels``) are
trained here:

labels (customer[, category], snapshot, 0/1) -> the FeatureService's customer views, point in time (one
retrieval per (customer, snapshot), shared by every task trained together), plus the label model's own
columns whose yml ``meta`` says ``task_feature: true`` (e.g. the customer's history in the category) -> a
LightGBM classifier (early stopping on the validation months) -> an isotonic calibrator fitted on the
validation months (monotone in the score) -> on the test months: AUROC (with a bootstrap standard error
over customers), PR-AUC, Brier and ECE, against the task's baselines scored on the same rows; a
multi-label task also per category (AUROC), as a ranking of categories per customer (nDCG@k, recall@k)
and by the RecSys Challenge 2025 composite.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from nextbest.columns import CATEGORY, CUSTOMER_ID, EVENT_TIMESTAMP, LABEL, SNAPSHOT_ON
from nextbest.errors import UserError
from nextbest.features.manifest import load_manifest
from nextbest.features.retrieval import historical_features
from nextbest.features.store import check_applied_build, get_store
from nextbest.marts import existing_mart, manifest_path
from nextbest.settings import Settings, dbt_var_defaults
from nextbest.training.calibration import fit_isotonic
from nextbest.training.config import RankerConfig, SplitConfig, TrainingConfig
from nextbest.training.constants import CALIBRATION_PRIOR_ROWS
from nextbest.training.datasets import Progress
from nextbest.training.metrics import (
    expected_calibration_error,
    log_loss,
    ndcg_at_k,
    per_product_metrics,
    recall_at_k,
    recsys2025_score,
)
from nextbest.training.ranker import SmoothedEarlyStopping, eval_kwargs, lightgbm_kwargs
from nextbest.training.train import SnapshotSplit, split_snapshots

RANKING_TASK = "product_propensity"
"""The next-best-product ranking (``fct_ranking_labels``), trained by ``nextbest.training.train``."""
ALL_TASKS = "all"
"""``nextbest train --task all``: every task of the manifest."""
BINARY = "binary"
MULTI_LABEL = "multi_label"
CUSTOMER_CATEGORY = "customer_category"
BOOTSTRAP_SAMPLES = 200
CLASSIFIER = "classifier"
LOGISTIC = "logistic_regression"
POPULARITY = "popularity"
CATEGORY_K = 3
"""Cut-off of the multi-label task's ranking of categories per customer (nDCG@k, recall@k)."""


class UnknownTaskError(UserError):
    """No dbt label model declares the task (the message names the ones there are)."""


@dataclass(frozen=True)
class TaskSpec:
    """A task as its dbt label model declares it (``meta: {task, entity, kind}``)."""

    name: str
    model: str
    entity: str
    kind: str
    description: str = ""
    features: tuple[str, ...] = ()
    """The label model's own feature columns (column ``meta: {task_feature: true}``), known at the
    snapshot: e.g. the customer's history in the category of a customer x category task."""

    @property
    def keys(self) -> tuple[str, ...]:
        """The columns identifying one row of the label model (besides the snapshot)."""
        return (CUSTOMER_ID, CATEGORY) if self.entity == CUSTOMER_CATEGORY else (CUSTOMER_ID,)


def task_specs(settings: Settings) -> dict[str, TaskSpec]:
    """Task name -> its spec, for every model of the build's manifest whose ``meta`` names a task."""
    return task_specs_from_manifest(load_manifest(manifest_path(settings)))


def task_specs_from_manifest(manifest: Mapping[str, Any]) -> dict[str, TaskSpec]:
    """Task name -> its spec, for every model of a dbt manifest whose ``meta`` names a task, by name."""
    specs = {}
    for node in manifest.get("nodes", {}).values():
        meta = node.get("meta") or node.get("config", {}).get("meta") or {}
        if node.get("resource_type") == "model" and meta.get("task"):
            spec = TaskSpec(
                name=str(meta["task"]),
                model=node["name"],
                entity=str(meta.get("entity", "customer")),
                kind=str(meta.get("kind", BINARY)),
                description=" ".join(str(node.get("description", "")).split()),
                features=tuple(
                    name for name, column in (node.get("columns") or {}).items()
                    if (column.get("meta") or column.get("config", {}).get("meta") or {}).get("task_feature")
                ),
            )
            specs[spec.name] = spec
    return dict(sorted(specs.items()))


def task_spec(settings: Settings, name: str) -> TaskSpec:
    """The spec of task ``name``; UnknownTaskError naming the declared tasks."""
    specs = task_specs(settings)
    if name not in specs:
        raise UnknownTaskError(
            f"no dbt label model declares task {name!r} (meta.task); declared: {', '.join(specs) or 'none'}"
        )
    return specs[name]


# --------------------------------------------------------------------------- data


def task_labels(settings: Settings, spec: TaskSpec) -> pd.DataFrame:
    """The label model's rows: its keys (customer_id[, category]), snapshot_on, event_timestamp (naive
    UTC), its task features and label, ordered by event_timestamp and keys."""
    columns = [*spec.keys, SNAPSHOT_ON, EVENT_TIMESTAMP, *spec.features, LABEL]
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        frame = con.execute(
            f"select {', '.join(columns)} from read_parquet(?) "
            f"order by {EVENT_TIMESTAMP}, {', '.join(spec.keys)}",
            [str(existing_mart(settings, spec.model))],
        ).df()
    finally:
        con.close()
    for key in spec.keys:
        frame[key] = frame[key].astype(str)
    frame[SNAPSHOT_ON] = pd.to_datetime(frame[SNAPSHOT_ON]).dt.date
    frame[LABEL] = frame[LABEL].astype("int8")
    return frame


def customer_features(
    settings: Settings, labels: pd.DataFrame, service: str, progress: Progress | None = None
) -> pd.DataFrame:
    """``labels`` plus the service's customer-keyed features, point in time, one retrieval per snapshot."""
    store = get_store(settings)
    check_applied_build(settings, store)
    parts = []
    for ts, part in labels.groupby(EVENT_TIMESTAMP, sort=True):
        parts.append(historical_features(store, part, service, join_keys=(CUSTOMER_ID,)))
        if progress:
            progress(f"features {pd.Timestamp(ts).date()}: {len(part):,} customers")
    return pd.concat(parts, ignore_index=True)


def feature_matrix(
    frame: pd.DataFrame, feature_cols: Sequence[str], categories: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """The features as LightGBM takes them: numbers as float, strings as pandas categoricals.

    ``categories`` (learnt on the training rows) fixes which columns are categorical and their levels
    (an unseen level is missing); None learns them: the non-numeric columns, their levels sorted."""
    out = {}
    for col in feature_cols:
        values = frame[col]
        if categories is None:
            if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                out[col] = values.astype("float64")
            else:
                out[col] = values.astype("string").astype("category")
        elif col in categories:
            out[col] = pd.Categorical(values.astype(object), categories=list(categories[col]))
        else:
            out[col] = pd.to_numeric(values, errors="coerce").astype("float64")
    return pd.DataFrame(out, index=frame.index)


# --------------------------------------------------------------------------- models


@dataclass
class BinaryModel:
    """A classifier and its calibrator: ``predict_proba`` is monotone in the classifier's score."""

    booster: lgb.Booster
    feature_cols: list[str]
    categories: dict[str, list[str]]
    calibrator: IsotonicRegression
    best_iteration: int

    def _matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return feature_matrix(frame, self.feature_cols, self.categories)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """The classifier's raw score (log-odds) of each row."""
        return self.booster.predict(self._matrix(frame), raw_score=True, num_iteration=self.best_iteration)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class."""
        return self.calibrator.predict(self.score(frame))


def classifier_matrices(
    train: pd.DataFrame, valid: pd.DataFrame, feature_cols: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[str]]]:
    """Train and validation matrices with the categories learnt on the training rows."""
    x_train = feature_matrix(train, feature_cols)
    categories = {c: list(x_train[c].cat.categories) for c in x_train if x_train[c].dtype == "category"}
    return x_train, feature_matrix(valid, feature_cols, categories), categories


def fit_binary(
    train: pd.DataFrame, valid: pd.DataFrame, feature_cols: Sequence[str], params: RankerConfig
) -> BinaryModel:
    """LightGBM binary classifier (early stopping on the validation AUC), then isotonic calibration of
    its score on the validation rows (``calibration.fit_isotonic``: monotone, so the ranking of customers
    is the classifier's)."""
    x_train, x_valid, categories = classifier_matrices(train, valid, feature_cols)
    classifier = lgb.LGBMClassifier(objective="binary", **lightgbm_kwargs(params))
    classifier.fit(
        x_train,
        train[LABEL].to_numpy(),
        **eval_kwargs(x_valid, valid[LABEL].to_numpy()),
        eval_metric="auc",
        callbacks=[SmoothedEarlyStopping(params.early_stopping_rounds, params.early_stopping_window)],
    )
    best_iteration = int(classifier.best_iteration_ or classifier.n_estimators_)
    valid_score = classifier.booster_.predict(x_valid, raw_score=True, num_iteration=best_iteration)
    return BinaryModel(
        booster=classifier.booster_,
        feature_cols=list(feature_cols),
        categories=categories,
        calibrator=fit_isotonic(valid_score, valid[LABEL].to_numpy(), CALIBRATION_PRIOR_ROWS),
        best_iteration=best_iteration,
    )


CLASSIFIER_PARAMS = RankerConfig(
    n_estimators=2000,
    learning_rate=0.02,
    num_leaves=15,
    min_child_samples=50,
    subsample=0.8,
    colsample_bytree=0.8,
    reg_lambda=1.0,
    early_stopping_rounds=200,
)
"""The binary tasks' classifier: small regularised trees learnt slowly, stopped on the validation AUC."""


@dataclass
class LogisticBaseline:
    """Logistic regression on the classifier's features: numbers imputed (median) and standardised,
    strings one-hot encoded (missing and unseen levels as their own)."""

    numeric: list[str]
    strings: list[str]
    pipeline: Any = None

    @classmethod
    def fit(cls, train: pd.DataFrame, feature_cols: Sequence[str]) -> LogisticBaseline:
        """Fit on ``train``'s features and label."""
        numeric = [c for c in feature_cols if pd.api.types.is_numeric_dtype(train[c])]
        model = cls(numeric, [c for c in feature_cols if c not in numeric])
        columns = ColumnTransformer([
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), model.numeric),
            ("strings", OneHotEncoder(handle_unknown="ignore"), model.strings),
        ])
        model.pipeline = make_pipeline(columns, LogisticRegression(max_iter=2000))
        model.pipeline.fit(model._inputs(train), train[LABEL].to_numpy())
        return model

    def _inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = {c: frame[c].astype("float64") for c in self.numeric}
        out |= {c: frame[c].astype(object).where(frame[c].notna(), "missing") for c in self.strings}
        return pd.DataFrame(out, index=frame.index)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """The probability of the positive class."""
        return self.pipeline.predict_proba(self._inputs(frame))[:, 1]


TASK_RULES: dict[str, dict[str, tuple[str, float, float]]] = {
    "churn": {
        # months since the last transaction; never transacted = the longest gap
        "recency_rule": ("months_since_last_transaction", 1.0, 1e6),
        # fewer transactions in the last 3 months = more likely to churn
        "transactions_last_3_months_rule": ("count_transactions_last_3_months", -1.0, 0.0),
    },
    "category_propensity": {
        # the more recently active in the category, the more likely to come back; never = least likely
        "category_recency_rule": ("months_since_category_activity", -1.0, 1e6),
    },
}
"""Per task, one-feature rule baselines: name -> (feature, sign, value for a missing feature)."""


def rule_scores(frame: pd.DataFrame, feature: str, sign: float, missing: float) -> np.ndarray:
    """``sign * feature`` with missing values filled (a higher score = more likely positive)."""
    return sign * frame[feature].astype("float64").fillna(missing).to_numpy()


# --------------------------------------------------------------------------- evaluation


def bootstrap_auc(
    label: np.ndarray, scores: Mapping[str, np.ndarray], customers: np.ndarray, reference: str,
    samples: int = BOOTSTRAP_SAMPLES, seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """AUROC of each score with its bootstrap standard error over customers (a customer's rows drawn
    together), the paired difference ``reference - score`` with its standard error, and for every score
    but the reference whether the reference beats it by more than 2 of those (``reference_wins_by_2se``)."""
    codes, uniques = pd.factorize(customers)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in scores}
    for _ in range(samples):
        weight = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))[codes]
        kept = weight > 0
        if label[kept].min() == label[kept].max():
            continue
        for name, score in scores.items():
            draws[name].append(roc_auc_score(label[kept], score[kept], sample_weight=weight[kept]))
    out = {}
    ref = np.asarray(draws[reference])
    ref_auc = roc_auc_score(label, scores[reference])
    for name, score in scores.items():
        values = np.asarray(draws[name])
        auc = roc_auc_score(label, score)
        row: dict[str, Any] = {
            "auroc": float(auc),
            "auroc_se": float(values.std(ddof=1)),
            "auroc_below_reference": float(ref_auc - auc),
            "auroc_below_reference_se": float((ref - values).std(ddof=1)),
        }
        if name != reference:
            row["reference_wins_by_2se"] = bool(
                row["auroc_below_reference"] > 2 * row["auroc_below_reference_se"]
            )
        out[name] = row
    return out


def evaluate_binary(
    test: pd.DataFrame, scores: Mapping[str, np.ndarray], probability: np.ndarray, reference: str = CLASSIFIER
) -> dict[str, Any]:
    """AUROC (bootstrap s.e. over customers), PR-AUC of every score; Brier and ECE of the calibrated
    probability; per model whether the reference beats it by more than 2 standard errors."""
    label = test[LABEL].to_numpy()
    aucs = bootstrap_auc(label, scores, test[CUSTOMER_ID].to_numpy(), reference)
    models = {}
    for name, score in scores.items():
        models[name] = aucs[name] | {"pr_auc": float(average_precision_score(label, score))}
    models[reference] |= {
        "brier": float(brier_score_loss(label, probability)),
        "ece": expected_calibration_error(probability, label),
        "log_loss": log_loss(probability, label),
    }
    return {"rows": len(test), "customers": int(test[CUSTOMER_ID].nunique()),
            "positive_rate": float(label.mean()), "models": models}


# --------------------------------------------------------------------------- training


@dataclass
class TaskResult:
    """What ``train_binary_task`` fitted, measured and saved."""

    spec: TaskSpec
    model: BinaryModel
    evaluation: dict[str, Any]
    split: dict[str, str]
    bundle_path: Path
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The evaluation as terminal lines (``evaluation_lines``)."""
        return evaluation_lines(self.spec, self.evaluation, self.model.best_iteration)


def evaluation_lines(spec: TaskSpec, ev: Mapping[str, Any], best_iteration: int) -> list[str]:
    """A task's evaluation as terminal lines: one per model (the reference first; for a baseline its
    AUROC minus the classifier's with the paired s.e., and whether the classifier wins by more than 2
    s.e.), then its calibration; a multi-label task also ``category_lines``."""
    header = (f"{'model':<34} {'AUROC':>7} {'s.e.':>6} {'PR-AUC':>7} {'Δ vs classifier':>16} "
              f"{'beaten >2se':>11}")
    out = [f"task {spec.name} ({spec.model}): test {ev['rows']:,} rows, {ev['customers']:,} "
           f"customers, positive rate {ev['positive_rate']:.2%}", header]
    for name, row in ev["models"].items():
        delta, beaten = ("", "") if name == CLASSIFIER else (
            f"{-row['auroc_below_reference']:+.4f} ± {row['auroc_below_reference_se']:.4f}",
            "yes" if row["reference_wins_by_2se"] else "no",
        )
        out.append(
            f"{name:<34} {row['auroc']:>7.4f} {row['auroc_se']:>6.4f} {row['pr_auc']:>7.4f} {delta:>16} "
            f"{beaten:>11}".rstrip()
        )
    ref = ev["models"][CLASSIFIER]
    log = f", log loss {ref['log_loss']:.4f}" if "log_loss" in ref else ""  # reports before it had none
    out.append(f"calibrated classifier: Brier {ref['brier']:.4f}, ECE {ref['ece']:.4f}{log}; "
               f"best iteration {best_iteration}")
    if "categories" in ev:
        out += category_lines(ev["categories"])
    return out


def category_lines(categories: Mapping[str, Any]) -> list[str]:
    """A multi-label task's evaluation by category (``evaluate_categories``) as terminal lines."""
    k = categories["k"]
    out = [f"{'ranking of categories':<24} {f'nDCG@{k}':>7} {f'rec@{k}':>6} {'RecSys25':>8} {'AUROC':>6} "
           f"{'novelty':>7} {'divers.':>7}"]
    for name, row in categories["ranking"].items():
        rec = categories["recsys2025"].get(name)
        tail = (f"{rec['score']:>8.4f} {rec['auroc']:>6.4f} {rec['novelty']:>7.4f} {rec['diversity']:>7.4f}"
                if rec else "")
        out.append(f"{name[:24]:<24} {row['ndcg']:>7.4f} {row['recall']:>6.4f} {tail}".rstrip())
    models = [m for m in categories["ranking"] if m != POPULARITY]  # popularity is constant in a category
    header = " ".join(f"{m[:12]:>12}" for m in models)
    out.append(f"{'AUROC by category':<24} {'rows':>8} {'pos.':>6} {header}")
    for category, row in categories["per_category"].items():
        aucs = " ".join(f"{row.get(m, math.nan):>12.4f}" for m in models)
        out.append(f"{category[:24]:<24} {row['rows']:>8,} {row['positives']:>6,} {aucs}")
    return out


def task_split(spec: TaskSpec, split: SplitConfig, snapshots: Sequence[date]) -> SnapshotSplit:
    """The config's split of the task's labelled snapshots, with a gap of horizon - 1 months when
    ``dbt_project.yml`` gives the task a ``<task>_horizon_months`` var longer than a month (no training
    label window then overlaps the validation or test months)."""
    horizon = int(dbt_var_defaults().get(f"{spec.name}_horizon_months", 1) or 1)
    gap = max(split.gap_snapshots, horizon - 1)
    return split_snapshots(snapshots, split.model_copy(update={"gap_snapshots": gap}))


@dataclass
class TaskRows:
    """A task's labelled rows of the snapshots its split uses (``task_labels``), and the split."""

    spec: TaskSpec
    labels: pd.DataFrame
    split: SnapshotSplit


def task_rows(settings: Settings, spec: TaskSpec, config: TrainingConfig) -> TaskRows:
    """The task's labels, split by snapshot (``task_split``), without the snapshots no split uses."""
    check_trainable(spec)
    labels = task_labels(settings, spec)
    split = task_split(spec, config.split, sorted(labels[SNAPSHOT_ON].unique()))
    used = labels[labels[SNAPSHOT_ON].isin({*split.train, *split.valid, *split.test})]
    return TaskRows(spec, used.reset_index(drop=True), split)


def check_trainable(spec: TaskSpec) -> None:
    """UnknownTaskError unless ``spec`` is a binary customer task or a multi-label customer x category one."""
    if (spec.kind, spec.entity) not in {(BINARY, "customer"), (MULTI_LABEL, CUSTOMER_CATEGORY)}:
        raise UnknownTaskError(
            f"task {spec.name!r} is a {spec.kind} task on {spec.entity}: only binary customer and "
            "multi_label customer_category tasks train here (the ranking: `nextbest train`)"
        )


def shared_customer_features(
    settings: Settings, labels: Sequence[pd.DataFrame], service: str, progress: Progress | None = None
) -> pd.DataFrame:
    """One point-in-time retrieval of the service's customer features for every (customer, snapshot)
    of the tasks' ``labels``: customer_id, snapshot_on, event_timestamp, then one column per feature."""
    keys = pd.concat([f[[CUSTOMER_ID, SNAPSHOT_ON, EVENT_TIMESTAMP]] for f in labels], ignore_index=True)
    keys = keys.drop_duplicates([CUSTOMER_ID, SNAPSHOT_ON]).sort_values([EVENT_TIMESTAMP, CUSTOMER_ID])
    return customer_features(settings, keys.reset_index(drop=True), service, progress)


def with_customer_features(labels: pd.DataFrame, customer: pd.DataFrame) -> pd.DataFrame:
    """``labels`` (row order kept) with the features of its customer at its snapshot."""
    return labels.merge(
        customer.drop(columns=[EVENT_TIMESTAMP]), on=[CUSTOMER_ID, SNAPSHOT_ON], how="left",
        validate="many_to_one",
    )


def category_popularity(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The popularity baseline: each test row's category adoption rate in ``train`` (a category unseen
    there gets the overall rate)."""
    rate = train.groupby(CATEGORY, observed=True)[LABEL].mean()
    return test[CATEGORY].map(rate).astype("float64").fillna(float(train[LABEL].mean())).to_numpy()


def evaluate_categories(
    test: pd.DataFrame, scores: Mapping[str, np.ndarray], train: pd.DataFrame,
    probabilities: Sequence[str] = (POPULARITY,), k: int = CATEGORY_K,
) -> dict[str, Any]:
    """A multi-label task by category: per category its rows, positives and each score's AUROC; each
    score's ranking of the categories of a customer at a snapshot (nDCG@k, recall@k, over groups with a
    positive); the RecSys 2025 composite of the classifier (log-odds, through its sigmoid) and of the
    ``probabilities`` scores, with popularity = positives per category in ``train``."""
    groups = (CUSTOMER_ID, SNAPSHOT_ON)
    base = test[[CUSTOMER_ID, SNAPSHOT_ON, CATEGORY, LABEL]].reset_index(drop=True)
    items = sorted(set(train[CATEGORY]) | set(base[CATEGORY]))
    popularity = train.groupby(CATEGORY)[LABEL].sum().reindex(items).fillna(0.0)
    per_category: dict[str, dict[str, Any]] = {}
    ranking, recsys = {}, {}
    for name, score in scores.items():
        frame = base.assign(score=score)
        ranking[name] = {"ndcg": ndcg_at_k(frame, k, groups), "recall": recall_at_k(frame, k, groups)}
        per = per_product_metrics(frame, k, product_col=CATEGORY, group_cols=groups)
        for category, row in per.iterrows():
            entry = per_category.setdefault(
                str(category), {"rows": int(row["n"]), "positives": int(row["positives"])}
            )
            entry[name] = float(row["auc"])
        if name == CLASSIFIER or name in probabilities:
            recsys[name] = recsys2025_score(
                frame, popularity, logits=name == CLASSIFIER, product_col=CATEGORY, group_cols=groups
            )
    return {"k": k, "ranking": ranking, "recsys2025": recsys, "per_category": per_category}


def train_task(
    rows: TaskRows, customer: pd.DataFrame, progress: Progress | None = None,
    params: RankerConfig = CLASSIFIER_PARAMS,
) -> tuple[BinaryModel, dict[str, Any]]:
    """Fit and evaluate one task on its rows joined to the retrieved ``customer`` features: the
    classifier (calibrated) and the task's baselines, scored on the test months (module docstring)."""
    say = progress or (lambda _msg: None)
    spec, split = rows.spec, rows.split
    frame = with_customer_features(rows.labels, customer)
    own = ([CATEGORY] if spec.entity == CUSTOMER_CATEGORY else []) + list(spec.features)
    feature_cols = [c for c in customer.columns if c not in (CUSTOMER_ID, SNAPSHOT_ON, EVENT_TIMESTAMP)] + own
    frames = {
        name: frame[frame[SNAPSHOT_ON].isin(set(getattr(split, name)))].reset_index(drop=True)
        for name in ("train", "valid", "test")
    }
    say(f"task {spec.name}: {len(frames['train']):,} training rows, {len(feature_cols)} features")
    model = fit_binary(frames["train"], frames["valid"], feature_cols, params)
    say(f"task {spec.name}: classifier best iteration {model.best_iteration}")
    test = frames["test"]
    extra = {}
    if spec.kind == BINARY:
        extra[LOGISTIC] = LogisticBaseline.fit(frames["train"], feature_cols).score(test)
    return model, evaluate_task(spec, model, frames["train"], test, extra)


def evaluate_task(
    spec: TaskSpec, model: BinaryModel, train: pd.DataFrame, test: pd.DataFrame,
    fitted_scores: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Score ``test`` with the classifier, the ``fitted_scores`` of fitted baselines, the task's rules
    and (multi-label) popularity from ``train``'s labels, and evaluate them (``evaluate_binary``; a
    multi-label task also ``evaluate_categories``)."""
    scores = {CLASSIFIER: model.score(test), **(fitted_scores or {})}
    if spec.kind == MULTI_LABEL:
        scores[POPULARITY] = category_popularity(train, test)
    for name, (feature, sign, missing) in TASK_RULES.get(spec.name, {}).items():
        if feature in test:
            scores[name] = rule_scores(test, feature, sign, missing)
    evaluation = evaluate_binary(test, scores, model.predict_proba(test))
    if spec.kind == MULTI_LABEL:
        evaluation["categories"] = evaluate_categories(test, scores, train)
    return evaluation


def train_tasks(
    settings: Settings, specs: Sequence[TaskSpec], config: TrainingConfig, progress: Progress | None = None,
    params: RankerConfig = CLASSIFIER_PARAMS,
) -> list[TaskResult]:
    """Train, evaluate and save every task of ``specs`` on ONE retrieval of the customer features (the
    union of the tasks' customers and snapshots); each result's ``seconds`` holds the shared retrieval
    time and its own fit time."""
    say = progress or (lambda _msg: None)
    settings = settings.pinned()
    started = time.perf_counter()
    rows = [task_rows(settings, spec, config) for spec in specs]
    for r in rows:
        say(f"task {r.spec.name}: split {r.split.describe()}")
    customer = shared_customer_features(settings, [r.labels for r in rows], config.feature_service, say)
    retrieval = time.perf_counter() - started
    results = []
    for r in rows:
        started = time.perf_counter()
        model, evaluation = train_task(r, customer, say, params)
        bundle_path = save_task_bundle(settings, r.spec, model, evaluation, r.split.as_dict())
        seconds = {"retrieval": retrieval, "fit": time.perf_counter() - started}
        results.append(TaskResult(r.spec, model, evaluation, r.split.as_dict(), bundle_path, seconds))
    return results


def train_binary_task(
    settings: Settings, spec: TaskSpec, config: TrainingConfig, progress: Progress | None = None,
    params: RankerConfig = CLASSIFIER_PARAMS,
) -> TaskResult:
    """Fit, calibrate, evaluate and save one classification task ``spec`` (see the module docstring)."""
    return train_tasks(settings, [spec], config, progress, params)[0]


def customer_feature_count(results: Sequence[TaskResult]) -> int:
    """Features every task of ``results`` reads (the shared customer features)."""
    sets = [set(r.model.feature_cols) for r in results]
    return len(set.intersection(*sets)) if sets else 0


def task_models_dir(settings: Settings, task: str) -> Path:
    """Where the bundles of ``task`` are kept (apart from the ranker's, which ``latest_bundle`` lists)."""
    return settings.models_dir / "tasks" / task


def save_task_bundle(
    settings: Settings, spec: TaskSpec, model: BinaryModel, evaluation: Mapping[str, Any],
    data_range: Mapping[str, str],
) -> Path:
    """Write ``models/tasks/<task>/<UTC stamp>/``: the booster, the calibrator and ``task.json`` (task,
    label model, features, categories, best iteration, build id, data range, evaluation); written to a
    temporary directory first and renamed, so a bundle is whole or absent."""
    version = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    final = task_models_dir(settings, spec.name) / version
    tmp = final.with_name(f".{version}.tmp")
    tmp.mkdir(parents=True)
    model.booster.save_model(str(tmp / "classifier.txt"), num_iteration=model.best_iteration)
    joblib.dump(model.calibrator, tmp / "calibrator.joblib")
    meta = {
        "task": spec.name, "kind": spec.kind, "entity": spec.entity, "label_model": spec.model,
        "features": model.feature_cols, "categories": model.categories,
        "best_iteration": model.best_iteration, "build_id": settings.current_build_id,
        "data_range": dict(data_range), "evaluation": evaluation,
    }
    (tmp / "task.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.rename(final)
    return final


def latest_task_bundle(settings: Settings, task: str) -> Path | None:
    """The newest complete bundle of ``task`` (versions are UTC stamps), None when there is none."""
    root = task_models_dir(settings, task)
    versions = sorted(p for p in root.glob("[!.]*") if (p / "task.json").is_file())
    return versions[-1] if versions else None


def load_task_bundle(path: Path) -> tuple[BinaryModel, dict[str, Any]]:
    """The model of a bundle ``save_task_bundle`` wrote, and its ``task.json``.

    Raises:
        FileNotFoundError: ``path`` holds no ``task.json`` (not a task bundle)."""
    path = Path(path)
    if not (path / "task.json").is_file():
        raise FileNotFoundError(f"{path} is not a task bundle (no task.json)")
    meta = json.loads((path / "task.json").read_text(encoding="utf-8"))
    model = BinaryModel(
        booster=lgb.Booster(model_file=str(path / "classifier.txt")),
        feature_cols=list(meta["features"]),
        categories={c: list(levels) for c, levels in meta["categories"].items()},
        calibrator=joblib.load(path / "calibrator.joblib"),
        best_iteration=int(meta["best_iteration"]),
    )
    return model, meta


def reevaluate_task_bundle(
    settings: Settings, spec: TaskSpec, path: Path, service: str, progress: Progress | None = None
) -> dict[str, Any]:
    """The bundle's classifier and the task's rules (and popularity, from the training months' labels)
    scored again on its test months, from the live build's labels and features (the fitted logistic
    baseline is not in the bundle: it is left out)."""
    settings = settings.pinned()
    model, meta = load_task_bundle(path)
    span = meta["data_range"]
    labels = task_labels(settings, spec)
    day = labels[SNAPSHOT_ON].astype(str)
    train = labels[(day >= span["train_start"]) & (day <= span["train_end"])]
    test = labels[(day >= span["test_start"]) & (day <= span["test_end"])].reset_index(drop=True)
    if test.empty:
        raise UserError(f"{path}: no rows of {spec.model} in its test months {span['test_start']}.."
                        f"{span['test_end']} (the live build has other snapshots)")
    customer = shared_customer_features(settings, [test], service, progress)
    return evaluate_task(spec, model, train, with_customer_features(test, customer))
