"""nextbest.training.train: the ranker's feature list without the groups a config excludes."""

from __future__ import annotations

import pytest

from nextbest.training.config import ConfigError
from nextbest.training.train import kept_feature_groups, row_blocks

GROUPS = {
    "product_id": "product_id",
    "age_years": "profile",
    "income": "profile",
    "sum_spend_last_3_months": "activity",
}


def test_excluded_groups_are_dropped_and_the_order_is_kept() -> None:
    kept = kept_feature_groups(GROUPS, ["profile"])
    assert list(kept) == ["product_id", "sum_spend_last_3_months"]
    assert kept_feature_groups(GROUPS, []) == GROUPS


def test_an_unknown_group_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no feature group \['profil'\].*activity, product_id, profile"):
        kept_feature_groups(GROUPS, ["profil"])


def test_row_blocks_cover_every_row_once_in_order() -> None:
    assert row_blocks(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert row_blocks(6, 3) == [slice(0, 3), slice(3, 6)]
    assert row_blocks(2, 3) == [slice(0, 2)]
    assert row_blocks(0, 3) == [slice(0, 0)]
