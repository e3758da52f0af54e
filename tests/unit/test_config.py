"""nextbest.training.config:
the shipped configs validate, dataset names map to them, unknown names get the default."""

from __future__ import annotations

import pytest

from nextbest.training.config import (
    CONFIG_DIR,
    DEFAULT_FAMILY,
    TrainingConfig,
    dataset_family,
    default_config_path,
    load_config,
)


@pytest.mark.parametrize(
    ("name", "family", "file"),
    [
        ("synthetic", "synthetic", "synthetic.yaml"),
        ("Synthetic-Bank", "synthetic", "synthetic.yaml"),
        ("completejourney-product_category", "completejourney", "completejourney.yaml"),
        ("complete_journey", "completejourney", "completejourney.yaml"),
        ("acme-bank", DEFAULT_FAMILY, "default.yaml"),
        ("my_dataset", DEFAULT_FAMILY, "default.yaml"),
        ("", DEFAULT_FAMILY, "default.yaml"),
    ],
)
def test_dataset_name_maps_to_its_family_or_the_default(name: str, family: str, file: str) -> None:
    assert dataset_family(name) == family
    assert default_config_path(name) == CONFIG_DIR / file


def test_every_shipped_config_validates() -> None:
    names = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
    assert {"default.yaml", "synthetic.yaml", "completejourney.yaml"} <= set(names)
    for name in names:
        assert isinstance(load_config(CONFIG_DIR / name), TrainingConfig), name


def test_default_config_is_safe_for_an_unknown_dataset() -> None:
    """Whole groups up to 100 candidates, up to 24 earlier snapshots for training, no failing threshold."""
    config = load_config(default_config_path("acme"))
    assert config.name == "default"
    assert (config.split.test_snapshots, config.split.valid_snapshots) == (2, 3)
    assert config.split.min_train_snapshots == 6  # a short history gives back valid/test months
    assert config.split.max_train_snapshots == 24 and config.split.gap_snapshots == 0
    assert config.max_negatives_per_group == 100
    assert config.baselines == ["popularity", "per_product", "pooled", "oracle"]
    assert config.calibration.feature_cols == []
    assert config.calibration.min_positives >= 20
    assert config.expected_metrics == {}
