"""Typed training configuration, loaded from YAML (``training/configs/<dataset>.yaml``).

Nothing here touches the file system except ``load_config``; defaults reproduce the documented
split: the last labelled snapshot is the held-out test month, the one before is the validation
month (early stopping and calibration), every earlier labelled snapshot is training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nextbest.errors import UserError
from nextbest.features.definitions import FEATURE_SERVICE_NAME
from nextbest.settings import PROJECT_ROOT
from nextbest.training.constants import CALIBRATION_PRIOR_ROWS, DEFAULT_K

CONFIG_DIR = PROJECT_ROOT / "training" / "configs"
"""Where the shipped per-dataset configs live."""

DATASET_CONFIGS: dict[str, str] = {"synthetic": "synthetic.yaml", "completejourney": "completejourney.yaml"}
"""Dataset family -> its shipped config file name."""

DEFAULT_FAMILY = "default"
"""The family of a dataset whose name matches no shipped config (e.g. your own ``ingest dir``)."""

DEFAULT_CONFIG = "default.yaml"
"""The documented config for datasets of the default family."""


class ConfigError(UserError, ValueError):
    """A training config that does not fit the built data (e.g. an excluded feature group that no
    feature belongs to); the message names the key and what would fit."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Strict):
    """How labelled snapshots are split, counted from the latest labelled snapshot backwards.

    Attributes:
        test_snapshots: the last N labelled snapshots, held out for evaluation only (>= 1).
        valid_snapshots: the N labelled snapshots before the test ones: early stopping and
            calibration (>= 1).
        max_train_snapshots: keep only the latest N snapshots before validation for training
            (None = all of them).
        gap_snapshots: labelled snapshots skipped between train and validation and between
            validation and test (0 = adjacent; use >= horizon - 1 months with a longer horizon so that
            a training label window never overlaps the test month).
        min_train_snapshots: when the history leaves fewer training snapshots than this, the
            validation and then the test snapshots give way one at a time (down to 1 each) until it
            does; None = the counts are fixed and a short history is an error. For a config meant for
            datasets of any length (``default.yaml``).
    """

    test_snapshots: int = Field(default=1, ge=1)
    valid_snapshots: int = Field(default=1, ge=1)
    max_train_snapshots: int | None = Field(default=None, ge=1)
    gap_snapshots: int = Field(default=0, ge=0)
    min_train_snapshots: int | None = Field(default=None, ge=1)


class PointwiseConfig(_Strict):
    """The ranker's pointwise part (``nextbest.training.ranker.add_pointwise``): a binary LightGBM fitted
    on the ranker's own rows, early-stopped on the validation log loss (at most ``n_estimators`` trees),
    its trees added to the ranker's booster with their within-group spread scaled to ``weight`` times
    the LambdaMART trees'."""

    n_estimators: int = Field(default=1000, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=15, ge=2)
    min_child_samples: int = Field(default=20, ge=1)
    early_stopping_rounds: int = Field(default=50, ge=1)
    weight: float = Field(default=1.0, gt=0)


class RankerConfig(_Strict):
    """LambdaMART hyper-parameters (LightGBM names; ``extra`` passed through to ``LGBMRanker``), used
    directly by ``nextbest.training.ranker.fit_ranker``; early stopping on NDCG@``TrainingConfig.k``."""

    n_estimators: int = Field(default=500, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=31, ge=2)
    min_child_samples: int = Field(default=20, ge=1)
    subsample: float = Field(default=1.0, gt=0, le=1)
    colsample_bytree: float = Field(default=1.0, gt=0, le=1)
    reg_lambda: float = Field(default=0.0, ge=0)
    early_stopping_rounds: int = Field(default=50, ge=1)
    early_stopping_window: int = Field(default=1, ge=1)
    """Iterations over which the validation metric is averaged before the best one is chosen
    (``ranker.SmoothedEarlyStopping``); 1 = LightGBM's own early stopping on the single best iteration."""
    lambdarank_norm: bool = True
    """LightGBM's ``lambdarank_norm``: True divides each pair's NDCG change by its score gap (near ties
    weigh most) and each group's lambdas by log2 of their sum; False weighs every mis-ordered pair by
    its NDCG change alone."""
    sigmoid: float = Field(default=1.0, gt=0)
    """LightGBM's ``sigmoid`` of the lambdarank pairwise loss: lower is a softer pairwise loss."""
    n_jobs: int = Field(default=2, ge=1)
    seed: int = 0
    extra: dict[str, Any] = Field(default_factory=dict)
    pointwise: PointwiseConfig | None = None
    """A pointwise part added to the LambdaMART trees (None: LambdaMART alone)."""
    seasonal_offset: float = Field(default=0.0, ge=0)
    """Weight of the season in the ranker's score (``ranker.fit_with_season``): the trees are fitted on
    top of this times ln(``seasonal_index_label_month``) in the units of a log adoption rate, and the
    score adds it; 0: none."""
    seasonal_units: float | None = Field(default=None, ge=0)
    """Score units of a log adoption rate for the seasonal offset. None: measured on a first fit without
    it; refits set their selected ranker's (``ranker.same_season``), so they add the same season."""


class BaselineConfig(_Strict):
    """The binary LightGBM baselines (per-product and pooled: fixed rounds, no early stopping) and the
    per-product fallback; used directly by ``nextbest.training.baselines``."""

    n_estimators: int = Field(default=200, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=31, ge=2)
    min_child_samples: int = Field(default=20, ge=1)
    n_jobs: int = Field(default=1, ge=1)
    seed: int = 0
    per_product_min_positives: int = Field(default=20, ge=1)


class CalibrationConfig(_Strict):
    """Per-product calibrators fitted on the validation month (never down-sampled); used directly by
    ``nextbest.training.calibration.fit_calibrators`` (the LightGBM calibrators' hyper-parameters).

    Attributes:
        min_positives: a product needs this many positives and negatives for its own calibrator.
        feature_cols: customer features used beside the score (empty -> isotonic on the score).
        prior_rows: the isotonic calibrators' prior: each step's rate is shrunk toward the product's
            base rate as if it had this many more rows at that rate (``calibration.fit_isotonic``;
            0 = plain isotonic regression, which gives 0 to a step without a positive).
        n_bins: bins of the reliability diagram and ECE.
    """

    min_positives: int = Field(default=50, ge=1)
    feature_cols: list[str] = Field(default_factory=list)
    prior_rows: float = Field(default=CALIBRATION_PRIOR_ROWS, ge=0)
    n_bins: int = Field(default=10, ge=1)
    n_estimators: int = Field(default=150, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=7, ge=2)
    min_child_samples: int = Field(default=50, ge=1)
    n_jobs: int = Field(default=1, ge=1)
    seed: int = 0


class AblationConfig(_Strict):
    """Feature-group ablation: the ranker refitted without each feature group, scored on the test month.

    Each refit uses the full ranker's training groups, parameters and early stopping on the same
    validation groups; only the number of trees is capped, so the ablation costs at most one capped
    ranker fit per group.

    Attributes:
        enabled: run the ablation (False: the report has no ablation table).
        n_estimators: the refits' maximum number of trees. None = twice the full ranker's best
            iteration, at least ``ranker.early_stopping_rounds`` and at most ``ranker.n_estimators``:
            a refit that lost information rarely needs many more trees than the full ranker, and
            the cap keeps the cost near that of the full fit. A refit whose best iteration equals
            the cap was still improving (the report shows both).
        skip_groups: groups not ablated (``product_id``: without it the ranker cannot tell products
            apart beyond their features, a known and large loss).
    """

    enabled: bool = True
    n_estimators: int | None = Field(default=None, ge=1)
    skip_groups: list[str] = Field(default_factory=lambda: ["product_id"])


class FeatureSelectionConfig(_Strict):
    """Feature groups the ranker drops when the validation months say they hurt.

    The ranker is refitted without each group (same rows, parameters and early stopping; trees capped
    as the ablation's, see ``AblationConfig.n_estimators``) and scored on the validation groups; a
    group whose refit beats the full ranker's validation nDCG@k by more than ``min_gain_se`` paired
    standard errors is dropped (several: the joint refit, unless one group's refit alone does better),
    and the ranker is refitted on the rest. The test months play no part; the refits without a group
    double as the report's ablation when nothing is dropped.

    Attributes:
        enabled: select (False: every group of the FeatureService not excluded is used).
        min_gain_se: the validation gain, in paired standard errors, a drop must show.
        skip_groups: groups never dropped.
    """

    enabled: bool = False
    min_gain_se: float = Field(default=2.0, gt=0)
    skip_groups: list[str] = Field(default_factory=lambda: ["product_id"])


class RefitConfig(_Strict):
    """The ranker refitted on the training and validation months once validation has chosen its trees.

    Validation months are the latest before the test and, on a short history, a quarter of the data:
    early stopping (and feature selection) run on them as usual, then the ranker is fitted again on
    training + validation groups with the chosen number of trees scaled by the groups it gains. Its
    calibrators are cross-fitted: each validation month is scored by a refit that did not see it
    (training + the other validation months), so they still map held-out scores to probabilities.
    The baselines are fitted on the same rows as the refitted ranker, except the per-product models:
    their Platt calibration on the validation months needs months they did not see, so they keep the
    training months (calibrated in-sample on The Complete Journey they lost 0.027 nDCG@7). The report's
    ablation compares refits without each group against the ranker before the refit (both on the
    training months).

    Attributes:
        enabled: refit (False: the ranker and baselines are fitted on the training months only).
    """

    enabled: bool = False


class TrainingConfig(_Strict):
    """Everything ``nextbest.training.train.train`` needs besides the settings.

    Attributes:
        name: a label for reports (e.g. ``synthetic``).
        feature_service: the Feast FeatureService the features come from.
        use_product_id: add ``product_id`` as a native categorical feature (the ranker must know
            which product it scores; product features alone may not identify it).
        k: cut-off of NDCG@k / MAP@k and of early stopping.
        max_negatives_per_group: down-sample training negatives (keep every positive and at most
            this many negatives per group); None keeps all. Validation and test are never sampled.
        seed: seed of the down-sampling.
        baselines: which baselines to fit (any of popularity, per_product, pooled, oracle; the
            oracle only runs when the data has oracle probabilities).
        expected_metrics: ``"<model>.<metric>" -> minimum`` (e.g. ``"ranker.ndcg@7": 0.3``); a
            value below its minimum fails the run (the report is still written, no bundle is saved).
        ablation: the feature-group ablation of the report (see ``AblationConfig``).
        exclude_feature_groups: feature groups of the FeatureService the ranker does not use (a
            group whose ablation showed it hurts on this dataset); the report's ablation still drops
            each remaining group in turn.
        feature_selection: groups dropped on the validation months (see ``FeatureSelectionConfig``).
        refit: the ranker refitted on training + validation months (see ``RefitConfig``).
    """

    name: str = "default"
    feature_service: str = FEATURE_SERVICE_NAME
    use_product_id: bool = True
    exclude_feature_groups: list[str] = Field(default_factory=list)
    k: int = Field(default=DEFAULT_K, ge=1)
    split: SplitConfig = Field(default_factory=SplitConfig)
    max_negatives_per_group: int | None = Field(default=None, ge=0)
    seed: int = 0
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    baselines: list[str] = Field(default_factory=lambda: ["popularity", "per_product", "pooled", "oracle"])
    baseline_params: BaselineConfig = Field(default_factory=BaselineConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    expected_metrics: dict[str, float] = Field(default_factory=dict)
    ablation: AblationConfig = Field(default_factory=AblationConfig)
    feature_selection: FeatureSelectionConfig = Field(default_factory=FeatureSelectionConfig)
    refit: RefitConfig = Field(default_factory=RefitConfig)

    @model_validator(mode="after")
    def _known_baselines(self) -> TrainingConfig:
        unknown = set(self.baselines) - {"popularity", "per_product", "pooled", "oracle"}
        if unknown:
            raise ValueError(f"unknown baseline(s) {sorted(unknown)}")
        return self


def load_config(path: Path) -> TrainingConfig:
    """Read and validate a YAML training config (an empty file gives the defaults).

    Raises:
        FileNotFoundError: no such file.
        pydantic.ValidationError: unknown key or out-of-range value (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return TrainingConfig.model_validate(data)


def dataset_family(dataset_name: str) -> str:
    """``synthetic``, ``completejourney`` or ``default`` from a dataset.json name.

    A name containing a shipped family (e.g. ``synthetic-bank``, ``completejourney-product_category``;
    case, ``-`` and ``_`` ignored) gives that family; any other name gives ``DEFAULT_FAMILY``.
    """
    lowered = dataset_name.lower().replace("_", "").replace("-", "")
    for family in DATASET_CONFIGS:
        if lowered.startswith(family) or family in lowered:
            return family
    return DEFAULT_FAMILY


def default_config_path(dataset_name: str) -> Path:
    """The shipped config for a dataset name: its family's (see ``dataset_family``), else ``default.yaml``."""
    return CONFIG_DIR / DATASET_CONFIGS.get(dataset_family(dataset_name), DEFAULT_CONFIG)
