"""The full Complete Journey through ingest and ``dbt build`` (real data, real dbt and DuckDB)."""

from __future__ import annotations

import duckdb
import pytest

from nextbest.ingest.completejourney import build_completejourney
from nextbest.ingest.store import ingest_directory
from nextbest.pipeline import build_warehouse, summarize_warehouse
from nextbest.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cj_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("cj") / "nextbest"
    settings = Settings(home=home)
    build_completejourney(settings.sources_dir / "cj", grain="product_category")
    ingest_directory(settings.sources_dir / "cj", settings.raw_dir)
    build_warehouse(settings, quiet=True)
    return settings


def test_build_summary_matches_the_dataset(cj_settings: Settings) -> None:
    summary = summarize_warehouse(cj_settings)
    assert summary.products == 303
    assert 2_000 <= summary.customers <= 2_469
    # 12 complete months of 2017; burn-in 7 => labels from 2017-07-31; horizon 1 => last labelled 2017-11-30
    assert summary.snapshots == 12
    assert summary.first_labelled_snapshot == "2017-07-31"
    assert summary.labelled_snapshots == 5
    assert summary.latest_snapshot == "2017-12-31"
    assert 100 < summary.mean_candidates_per_group < 303
    assert 0.005 < summary.positive_rate < 0.05


def test_labels_are_first_purchases_of_the_following_month(cj_settings: Settings) -> None:
    """A positive is a category first bought in the month after the snapshot, recomputed from raw."""
    marts, raw = cj_settings.marts_dir, cj_settings.raw_dir
    mismatches = duckdb.connect().execute(
        f"""
        with firsts as (
            select customer_id, product_id, min(started_on) as first_on
            from read_parquet('{raw}/holdings.parquet') group by all
        ),
        expected as (
            select l.customer_id, l.product_id, l.snapshot_on,
                   coalesce(f.first_on > l.snapshot_on
                            and f.first_on <= last_day(l.snapshot_on + interval 1 month), false)::int as label
            from read_parquet('{marts}/fct_ranking_labels.parquet') l
            left join firsts f using (customer_id, product_id)
        )
        select count(*) from expected e
        join read_parquet('{marts}/fct_ranking_labels.parquet') l using (customer_id, product_id, snapshot_on)
        where e.label <> l.label
        """
    ).fetchone()[0]
    assert mismatches == 0


def test_no_customer_is_labelled_during_their_own_burn_in(cj_settings: Settings) -> None:
    early = duckdb.connect().execute(
        f"""
        select count(*)
        from read_parquet('{cj_settings.marts_dir}/fct_ranking_labels.parquet') l
        join read_parquet('{cj_settings.raw_dir}/customers.parquet') c using (customer_id)
        where date_diff('month', date_trunc('month', c.joined_on), date_trunc('month', l.snapshot_on)) < 6
        """
    ).fetchone()[0]
    assert early == 0
