"""Campaign files: written beside their target and renamed in (``os.replace``), read with one-line errors."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.campaigns.errors import CampaignError


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` (no index) as parquet at ``path``, all or nothing."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def atomic_write_text(text: str, path: Path) -> None:
    """``text`` (utf-8) at ``path``, all or nothing."""
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(data: dict[str, Any], path: Path) -> None:
    """``data`` as indented JSON at ``path``, all or nothing."""
    atomic_write_text(json.dumps(data, indent=2, default=str) + "\n", path)


def atomic_save_png(fig: Any, path: Path) -> None:
    """A matplotlib figure as PNG at ``path``, all or nothing."""
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def read_table(path: Path, required: Sequence[str], what: str) -> pd.DataFrame:
    """A parquet (or .csv) file holding at least the ``required`` columns.

    Raises:
        CampaignError: the file is missing or unreadable, or lacks a column (one line naming them).
    """
    path = Path(path)
    if not path.is_file():
        raise CampaignError(f"{what} file {path} does not exist")
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as err:  # any reader error is the file's fault, said in one line
        raise CampaignError(
            f"{what} file {path} is not readable as {path.suffix or 'parquet'}: {err}"
        ) from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CampaignError(
            f"{what} file {path}: missing column(s) {', '.join(missing)} "
            f"(it has {', '.join(map(str, frame.columns))})"
        )
    return frame
