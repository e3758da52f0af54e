"""The access log's fields and the decisions log's buffering and files (no server needed)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nextbest.serving.decisions import (
    DECISIONS_SCHEMA,
    Decision,
    DecisionsLog,
    DecisionsLogError,
    read_decisions,
)
from nextbest.serving.logs import AccessLog, RequestContext, customer_tag, request_id_of
from nextbest.serving.metrics import dead_process_files
from nextbest.serving.results import RankedProduct, Ranking
from nextbest.settings import ServingSettings

SNAPSHOT = datetime(2024, 2, 1, tzinfo=UTC)


def ranking(customer: str, products: list[str]) -> Ranking:
    ranked = [RankedProduct(p, i + 1, 1.0 - i / 10, 0.5 - i / 20) for i, p in enumerate(products)]
    return Ranking(customer, SNAPSHOT, ranked, None if products else "none", len(products) + 2, [])


def test_customer_ids_are_hashed_keyed_omitted_or_plain() -> None:
    assert customer_tag("C1", "hash") == hashlib.sha256(b"C1").hexdigest()[:16]
    assert customer_tag("C1", "hash", "k") == hmac.new(b"k", b"C1", hashlib.sha256).hexdigest()[:16]
    assert customer_tag("C1", "omit") is None and customer_tag("C1", "plain") == "C1"


def test_a_sane_request_id_is_kept_else_a_new_one_is_made() -> None:
    assert request_id_of(b"abc-123:x.y_z") == "abc-123:x.y_z"
    for insane in (b"a b", b"x" * 129, b"\xff", b"", None):
        made = request_id_of(insane)
        assert len(made) == 32 and made != request_id_of(insane)


def test_a_log_line_has_no_scores_unless_enabled() -> None:
    ctx = RequestContext("r1", "app", [ranking("C1", ["P1", "P2"])], "v1")
    line = AccessLog(ServingSettings(), io.StringIO()).line(ctx, "POST", "/rank", 200, 1.23456)
    assert line["customers"] == [customer_tag("C1", "hash")] and line["latency_ms"] == 1.235
    assert line["snapshot"] == SNAPSHOT.isoformat() and "offers" not in line
    scored = AccessLog(ServingSettings(log_scores=True, log_customer="omit"), io.StringIO())
    line = scored.line(ctx, "POST", "/rank", 200, 1.0)
    assert "customers" not in line and line["offers"] == [[["P1", 0.5, 1.0], ["P2", 0.45, 0.9]]]


def test_decisions_are_flushed_by_size_by_age_and_on_close(tmp_path: Path) -> None:
    log = DecisionsLog(tmp_path, flush_rows=4, flush_s=0.3)
    log.start()
    decision = Decision("r1", "app", "v1", "ranker_v1")
    log.append([ranking("C1", ["P1", "P2"]), ranking("C2", ["P3", "P4"])], decision)  # 4 rows: by size
    deadline = time.monotonic() + 5
    while len(log.files) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(log.files) == 1 and pq.read_table(log.files[0]).num_rows == 4
    log.append([ranking("C3", [])], decision)  # 1 row: by age
    while len(log.files) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(log.files) == 2
    log.append([ranking("C4", ["P1"])], decision)
    log.close()  # the rest on close
    assert len(log.files) == 3
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    frame = read_decisions(tmp_path)
    assert pq.read_schema(log.files[0]).equals(DECISIONS_SCHEMA)
    assert sorted(frame["customer_id"]) == ["C1", "C1", "C2", "C2", "C3", "C4"]
    empty = frame[frame["customer_id"] == "C3"].iloc[0]
    assert empty["product_id"] is None and empty["n_candidates"] == 2


def test_a_writer_that_falls_behind_drops_and_counts(tmp_path: Path) -> None:
    dropped: list[int] = []
    log = DecisionsLog(tmp_path, flush_rows=2, max_buffer_rows=3, on_drop=dropped.append)  # not started
    decision = Decision("r", None, "v1", "ranker_v1")
    log.append([ranking("C1", ["P1", "P2"])], decision)
    log.append([ranking("C2", ["P1", "P2"])], decision)
    assert dropped == [2]
    assert log.flush() is not None and pq.read_table(log.files[0]).num_rows == 2


def test_a_failed_write_drops_its_rows_and_the_log_goes_on(tmp_path: Path) -> None:
    blocked = tmp_path / "not_a_dir"
    blocked.write_text("a file where the directory should be")
    dropped: list[int] = []
    log = DecisionsLog(blocked, flush_rows=10, on_drop=dropped.append)
    log.append([ranking("C1", ["P1", "P2"])], Decision("r", None, "v1", "ranker_v1"))
    assert log.flush() is None and dropped == [2] and log.files == []


def test_the_writer_writes_every_queued_line_once_and_stops(tmp_path: Path) -> None:
    stream = io.StringIO()
    log = AccessLog(ServingSettings(), stream)
    log.start()
    for i in range(1200):
        log.write(RequestContext(f"r{i}"), "GET", "/health", 200, 0.1)
    log.stop()
    ids = [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()]
    assert ids == [f"r{i}" for i in range(1200)]


def test_only_the_metric_files_of_processes_that_are_gone_are_cleared(tmp_path: Path) -> None:
    """A shared PROMETHEUS_MULTIPROC_DIR (inherited, e.g. the one importing Feast sets) keeps the files
    of live processes: they write to them through a memory map, and a removed file loses their counts."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f"counter_{gone.pid}.db"
    live = tmp_path / f"gauge_liveall_{os.getpid()}.db"
    odd = tmp_path / "histogram_x.db"
    for path in (dead, live, odd):
        path.write_bytes(b"")
    assert sorted(dead_process_files(tmp_path)) == sorted([dead, odd])


def test_a_file_that_is_not_a_decisions_log_is_refused_naming_it(tmp_path: Path) -> None:
    """Parquet reads a missing column as nulls, which replay would skip ("0 of 0 differ"): refused."""
    other = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"customer_id": ["C1"], "score": [0.5]}), other)
    with pytest.raises(DecisionsLogError, match=r"scores.parquet: not a decisions log file: .*'rank'"):
        read_decisions(other)
    text = tmp_path / "notes.parquet"
    text.write_text("not parquet")
    with pytest.raises(DecisionsLogError, match="notes.parquet: not a readable parquet file"):
        read_decisions(text)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_decisions(tmp_path / "nowhere")


def test_decisions_replay_of_a_wrong_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nextbest.cli import main

    other = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"customer_id": ["C1"]}), other)
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit) as exited:
        main(["decisions", "replay", str(other)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "not a decisions log file" in err
