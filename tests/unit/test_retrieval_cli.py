"""``nextbest retrieval``: a step not run yet ends in one line naming what to run, never a traceback."""

from __future__ import annotations

import pytest

from nextbest.cli import main
from nextbest.settings import Settings


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["retrieval", "recall"], "run `nextbest retrieval train`"),
        (["retrieval", "train"], "dim_products.parquet is missing: run `nextbest build` first"),
        (["retrieval", "embed"], "dim_products.parquet is missing: run `nextbest build` first"),
    ],
)
def test_missing_step_is_one_line(settings: Settings, capsys, args: list[str], says: str) -> None:
    with pytest.raises(SystemExit) as ended:
        main(args)
    err = capsys.readouterr().err
    assert ended.value.code != 0
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


def test_index_into_a_non_bundle_is_one_line(settings: Settings, capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["retrieval", "index", "--bundle", str(tmp_path)])
    err = capsys.readouterr().err
    assert ended.value.code != 0
    assert "is not a model bundle (no bundle.json): run `nextbest train`" in err
    assert err.count("\n") == 1 and "Traceback" not in err
