"""The model bundle: everything serving needs to reproduce training's scores, saved atomically.

A bundle is a directory ``<models_dir>/<version>/`` holding
  - ``ranker.txt``: the LightGBM booster in LightGBM's text format;
  - ``calibrators.joblib``: the per-product calibrators (absent when there are none);
  - ``bundle.json``: the ordered feature list, categorical mappings, feature service name and
    version, dbt manifest hash, training config, data range, build vars, the build id and dbt vars of
    the build it was trained on, metrics, code version, created_at.
It is written to a temporary directory beside its final place and renamed in one step, so a
reader never sees a half-written bundle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np

from nextbest.errors import UserError
from nextbest.features.store import materialized_build
from nextbest.marts import build_record
from nextbest.settings import BuildVars, OnlineKind, Settings
from nextbest.training.calibration import Calibrators
from nextbest.training.ranker import FittedRanker

BUNDLE_FORMAT = 3
"""Version of the on-disk layout; bump when it changes incompatibly. 2: the ranker's booster may hold a
pointwise part after its ``best_iteration`` trees (``pointwise_trees``), which a reader of format 1
would leave out of every score. 3: the ranker's score may add a seasonal offset (``seasonal_offset``),
which a reader of format 2 would leave out. A bundle is written in the oldest format that holds it
(``bundle_format``)."""
READABLE_FORMATS = (1, 2, 3)

RANKER_FILE = "ranker.txt"
CALIBRATORS_FILE = "calibrators.joblib"
METADATA_FILE = "bundle.json"

LEGACY_PACKAGES: dict[str, str] = {"training": "nextbest.training"}
"""Package names pickled into bundles saved before the code moved under ``nextbest``, and where that
code lives now: ``load_bundle`` reads such bundles unchanged."""
_LEGACY_LOCK = threading.Lock()


@contextmanager
def _legacy_package_names() -> Iterator[None]:
    """While loading a pickle, ``training.<module>`` also names ``nextbest.training.<module>`` (unless
    another module already holds that name); the aliases are removed afterwards."""
    with _LEGACY_LOCK:
        added = []
        for old, new in LEGACY_PACKAGES.items():
            for name, module in list(sys.modules.items()):
                if name == new or name.startswith(f"{new}."):
                    alias = old + name[len(new) :]
                    if alias not in sys.modules:
                        sys.modules[alias] = module
                        added.append(alias)
        try:
            yield
        finally:
            for alias in added:
                sys.modules.pop(alias, None)


log = logging.getLogger(__name__)

ALLOW_BUILD_MISMATCH_ENV = "NEXTBEST_SERVING_ALLOW_BUILD_MISMATCH"
"""The setting (``ServingSettings.allow_build_mismatch``) that serves a bundle of another build anyway."""


class BundleMismatchError(UserError, ValueError):
    """A bundle was trained on a different feature list, feature service or build than the live one."""


@dataclass
class ModelBundle:
    """A trained ranker plus calibrators and the provenance needed to serve and audit it.

    Attributes:
        ranker: the fitted ranker (booster, ordered features, categorical mapping, best iteration).
        calibrators: per-product score -> probability calibrators, or None.
        feature_service_name: the Feast FeatureService the features came from (e.g. ``ranker_v1``).
        feature_service_version: its version number (bumped when the feature list changes).
        dbt_manifest_hash: sha256 of the dbt ``manifest.json`` the features were built with.
        training_config: the training configuration (JSON-serialisable).
        data_range: e.g. ``{"train_start": "2023-01-31", "train_end": ..., "valid_end": ...}``.
        build_vars: the dbt vars the warehouse was built with (``nextbest.settings.BuildVars``: label
            horizon, activity look-back); empty when the build recorded none.
        build_id: the build the bundle was trained on (``warehouse/builds/<id>``); None for a warehouse in
            the flat layout, or a bundle saved before builds had ids.
        dbt_vars: every dbt var of that build (horizon_months, activity_lookback_months, burn_in_months,
            observed_until); empty when unknown.
        metrics: evaluation metrics (name -> number).
        unused_features: features of the FeatureService the ranker leaves out (the training config's
            ``exclude_feature_groups``); served, so not a mismatch.
        code_version: ``git describe`` of the code, else the package version.
        created_at: UTC creation time, ISO 8601.
    """

    ranker: FittedRanker
    calibrators: Calibrators | None
    feature_service_name: str
    feature_service_version: int
    dbt_manifest_hash: str | None = None
    training_config: dict[str, Any] = field(default_factory=dict)
    data_range: dict[str, str] = field(default_factory=dict)
    build_vars: dict[str, Any] = field(default_factory=dict)
    build_id: str | None = None
    dbt_vars: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    unused_features: list[str] = field(default_factory=list)
    code_version: str = field(default_factory=lambda: code_version())
    created_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    @property
    def feature_cols(self) -> list[str]:
        """The ordered feature list the ranker expects."""
        return list(self.ranker.feature_cols)

    @property
    def categories(self) -> dict[str, list[str]]:
        """The categorical mapping learned on the training data."""
        return self.ranker.categories

    @property
    def version(self) -> str:
        """The bundle's directory name: creation time (UTC, to the microsecond) and feature service."""
        stamp = datetime.fromisoformat(self.created_at.replace("Z", "+00:00")).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{stamp}-{self.feature_service_name}"


def code_version() -> str:
    """``git describe --always --dirty`` of this checkout, else the package version, else "unknown"."""
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        if out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return metadata.version("nextbest")
    except metadata.PackageNotFoundError:
        return "unknown"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (e.g. the dbt manifest)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path | datetime):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def bundle_format(ranker: FittedRanker) -> int:
    """The oldest format that scores ``ranker`` in full: 3 with a seasonal offset, 2 with a pointwise
    part, else 1 (``BUNDLE_FORMAT``)."""
    if ranker.seasonal_offset:
        return BUNDLE_FORMAT
    return 2 if ranker.pointwise_trees else 1


def _metadata(bundle: ModelBundle) -> dict[str, Any]:
    return {
        "bundle_format": bundle_format(bundle.ranker),
        "version": bundle.version,
        "feature_cols": bundle.feature_cols,
        "categories": bundle.categories,
        "best_iteration": bundle.ranker.best_iteration,
        "pointwise_trees": bundle.ranker.pointwise_trees,
        "seasonal_offset": bundle.ranker.seasonal_offset,
        "seasonal_weight": bundle.ranker.seasonal_weight,
        "best_valid_ndcg": bundle.ranker.best_valid_ndcg,
        "eval_at": bundle.ranker.eval_at,
        "has_calibrators": bundle.calibrators is not None,
        "feature_service_name": bundle.feature_service_name,
        "feature_service_version": bundle.feature_service_version,
        "dbt_manifest_hash": bundle.dbt_manifest_hash,
        "training_config": bundle.training_config,
        "data_range": bundle.data_range,
        "build_vars": bundle.build_vars,
        "build_id": bundle.build_id,
        "dbt_vars": bundle.dbt_vars,
        "metrics": bundle.metrics,
        "unused_features": bundle.unused_features,
        "code_version": bundle.code_version,
        "created_at": bundle.created_at,
        "lightgbm_version": lgb.__version__,
    }


def save_bundle(bundle: ModelBundle, models_dir: Path) -> Path:
    """Write ``bundle`` to ``models_dir/<bundle.version>/`` atomically and return that path.

    Files are written into a temporary directory inside ``models_dir`` and the directory is renamed
    into place in one step. Raises FileExistsError if that version already exists (nothing is
    overwritten); the temporary directory is removed on any failure.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / bundle.version
    if final.exists():
        raise FileExistsError(f"model bundle {final} already exists")
    meta = json.dumps(_metadata(bundle), indent=2, sort_keys=True, default=_json_default)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{bundle.version}-", dir=models_dir))
    try:
        bundle.ranker.booster.save_model(str(tmp / RANKER_FILE), num_iteration=-1)
        if bundle.calibrators is not None:
            joblib.dump(bundle.calibrators, tmp / CALIBRATORS_FILE)
        (tmp / METADATA_FILE).write_text(meta + "\n", encoding="utf-8")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _feature_differences(expected: list[str], actual: list[str]) -> list[str]:
    problems = []
    missing = [f for f in expected if f not in actual]
    extra = [f for f in actual if f not in expected]
    if missing:
        problems.append(f"features served but not in the bundle: {missing}")
    if extra:
        problems.append(f"features in the bundle but not served: {extra}")
    if not missing and not extra and expected != actual:
        problems.append(f"same features in a different order: bundle {actual} vs served {expected}")
    return problems


def load_bundle(
    path: Path,
    expected_features: list[str] | None = None,
    expected_service: str | None = None,
) -> ModelBundle:
    """Load a bundle written by ``save_bundle``, refusing one that does not match the live features.

    Args:
        path: the bundle directory.
        expected_features: the live FeatureService's ordered feature list (plus any key features
            such as ``product_id`` the ranker uses); None skips the check.
        expected_service: the live FeatureService's name (e.g. ``ranker_v2``); None skips the check.

    Raises:
        FileNotFoundError: ``path`` is not a bundle directory.
        BundleMismatchError: the feature list or service differs; the message lists the differences.
    """
    path = Path(path)
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a model bundle (no {METADATA_FILE})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("bundle_format") not in READABLE_FORMATS:
        readable = " or ".join(map(str, READABLE_FORMATS))
        raise BundleMismatchError(f"{path}: bundle format {meta.get('bundle_format')}, expected {readable}")
    problems: list[str] = []
    if expected_service is not None and meta["feature_service_name"] != expected_service:
        problems.append(
            f"feature service: bundle {meta['feature_service_name']!r} vs served {expected_service!r}"
        )
    if expected_features is not None:
        unused = set(meta.get("unused_features", []))
        expected = [f for f in expected_features if f not in unused]
        problems += _feature_differences(expected, list(meta["feature_cols"]))
    if problems:
        raise BundleMismatchError(
            f"model bundle {path} does not match the live features:\n  " + "\n  ".join(problems)
        )
    booster = lgb.Booster(model_file=str(path / RANKER_FILE))
    ranker = FittedRanker(
        booster=booster,
        feature_cols=list(meta["feature_cols"]),
        categories={k: list(v) for k, v in meta["categories"].items()},
        best_iteration=int(meta["best_iteration"]),
        best_valid_ndcg=float(meta["best_valid_ndcg"]),
        eval_at=int(meta["eval_at"]),
        pointwise_trees=int(meta.get("pointwise_trees", 0)),  # bundles written before the pointwise part
        seasonal_offset=float(meta.get("seasonal_offset", 0.0)),  # and before the seasonal offset
        seasonal_weight=float(meta.get("seasonal_weight", 0.0)),
    )
    calibrators = None
    if meta["has_calibrators"]:
        with _legacy_package_names():
            calibrators = joblib.load(path / CALIBRATORS_FILE)
    return ModelBundle(
        ranker=ranker,
        calibrators=calibrators,
        feature_service_name=meta["feature_service_name"],
        feature_service_version=int(meta["feature_service_version"]),
        dbt_manifest_hash=meta["dbt_manifest_hash"],
        training_config=meta["training_config"],
        data_range=meta["data_range"],
        build_vars=meta.get("build_vars", {}),
        build_id=meta.get("build_id"),
        dbt_vars=meta.get("dbt_vars", {}),
        metrics=meta["metrics"],
        unused_features=list(meta.get("unused_features", [])),
        code_version=meta["code_version"],
        created_at=meta["created_at"],
    )


def build_differences(
    bundle: ModelBundle, live_id: str | None, live_vars: dict[str, Any] | None
) -> list[str]:
    """How the build a bundle was trained on differs from the live build (empty when it does not).

    A bundle saved before builds had ids (no ``build_id`` while the live build has one) is not a
    difference: it cannot be checked, and ``check_bundle_build`` only warns. dbt vars are compared on
    the vars both recorded (an older bundle holds only ``build_vars``: horizon and look-back).
    """
    problems = []
    if bundle.build_id is not None and bundle.build_id != live_id:
        live = live_id or "the flat layout"
        problems.append(f"trained on build {bundle.build_id}, the live build is {live}")
    trained, live_vars = bundle.dbt_vars or bundle.build_vars, live_vars or {}
    changed = sorted(k for k in trained.keys() & live_vars.keys() if str(trained[k]) != str(live_vars[k]))
    if changed:
        diffs = ", ".join(f"{k} {trained[k]} (bundle) vs {live_vars[k]} (live)" for k in changed)
        problems.append(f"dbt vars differ: {diffs}")
    return problems


def check_bundle_build(
    bundle: ModelBundle, settings: Settings, online: OnlineKind, allow_mismatch: bool = False
) -> list[str]:
    """Refuse to serve ``bundle`` on another build than the one it was trained on, or a mixed store.

    Compares the bundle's build id and dbt vars with the live build (``settings``), and the online
    store's materialized build with the live one.

    Args:
        bundle: the loaded model bundle.
        settings: the live build (its pointer and ``build.json``) and the Feast directory.
        online: the online store kind serving reads.
        allow_mismatch: log the differences as a warning instead of refusing
            (``NEXTBEST_SERVING_ALLOW_BUILD_MISMATCH=true``).

    Returns:
        The differences found (logged when allowed), empty when the bundle matches.

    Raises:
        BundleMismatchError: a difference, one line naming the builds, the vars and what to do.
    """
    live_id = settings.current_build_id
    record = build_record(settings)
    flat_vars = BuildVars.read(settings.build_vars_path)
    live_vars = record.dbt_vars if record is not None else flat_vars.model_dump() if flat_vars else {}
    problems = build_differences(bundle, live_id, live_vars)
    loaded = materialized_build(settings, online)
    if loaded is not None and (loaded.build_id != live_id or not loaded.complete):
        state = "" if loaded.complete else " (materialization not finished)"
        problems.append(
            f"the {online} online store holds build {loaded.build_id or 'of the flat layout'}{state}, "
            f"the live build is {live_id or 'the flat layout'}: run `nextbest features materialize`"
        )
    if bundle.build_id is None and live_id is not None:
        log.warning("model bundle %s records no build (saved by an older nextbest)", bundle.version)
    if problems and not allow_mismatch:
        raise BundleMismatchError(
            f"model bundle {bundle.version} does not match the live build: {'; '.join(problems)}; retrain "
            f"(`nextbest train`) or serve it anyway with {ALLOW_BUILD_MISMATCH_ENV}=true"
        )
    for problem in problems:
        log.warning("serving model bundle %s despite: %s", bundle.version, problem)
    return problems


def latest_bundle(models_dir: Path) -> Path | None:
    """The most recent complete bundle under ``models_dir`` (by version name), or None."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return None
    bundles = sorted(
        p
        for p in models_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / METADATA_FILE).is_file()
    )
    return bundles[-1] if bundles else None
