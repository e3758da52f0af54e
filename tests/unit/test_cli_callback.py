"""The top-level `nextbest` command's own set-up (its callback), without running a subcommand."""

from __future__ import annotations

import warnings

import pytest

from nextbest import cli

FEAST_SPARK_ALPHA = (
    "The spark data source API is an experimental feature in alpha development. This API is unstable and "
    "it could and most probably will be changed in the future."
)


@pytest.mark.parametrize("engine", ["spark", "duckdb"])
def test_feasts_spark_alpha_warning_is_silenced_on_the_spark_engine_only(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTBEST_ENGINE", engine)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cli._main(debug=False)
        # what Feast raises for each SparkSource it builds, after the callback ran
        warnings.warn(FEAST_SPARK_ALPHA, RuntimeWarning, stacklevel=1)
        warnings.warn("another runtime warning", RuntimeWarning, stacklevel=1)
    other = ["another runtime warning"]
    assert [str(w.message) for w in seen] == (other if engine == "spark" else [FEAST_SPARK_ALPHA, *other])
