"""The registry store: a reader never parses a part-written registry (Feast's own store lets it)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from feast.infra.registry.file import FileRegistryStore
from feast.infra.registry.registry import get_registry_store_class_from_type
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.repo_config import RegistryConfig

from nextbest.features.registry_store import (
    FILE_REGISTRY_FLAG_WARNING,
    REGISTRY_STORE_TYPE,
    AtomicFileRegistryStore,
    FileRegistryFlagWarningFilter,
)


def a_registry(projects: int) -> RegistryProto:
    proto = RegistryProto()
    for i in range(projects):
        proto.project_metadata.add(project=f"project_{i}", project_uuid="u" * 200)
    return proto


def torn_reads(store_class: type[FileRegistryStore], path: Path, writes: int = 300) -> int:
    """Registries read while ``writes`` whole registries are written: how many had fewer projects."""
    store = store_class(RegistryConfig(path=str(path)), path.parent)
    full = a_registry(2_000)
    store.update_registry_proto(full)
    done = threading.Event()
    torn = 0

    def read() -> None:
        nonlocal torn
        reader = store_class(RegistryConfig(path=str(path)), path.parent)
        while not done.is_set():
            try:
                seen = reader.get_registry_proto()
            except Exception:  # noqa: BLE001 - a half-written file that does not parse is torn too
                torn += 1
                continue
            torn += len(seen.project_metadata) != len(full.project_metadata)

    thread = threading.Thread(target=read)
    thread.start()
    for _ in range(writes):
        store.update_registry_proto(full)
    done.set()
    thread.join()
    return torn


def test_feast_imports_the_store_by_its_configured_name() -> None:
    assert get_registry_store_class_from_type(REGISTRY_STORE_TYPE) is AtomicFileRegistryStore


def test_a_reader_never_sees_a_part_written_registry(tmp_path: Path) -> None:
    assert torn_reads(AtomicFileRegistryStore, tmp_path / "registry.db") == 0
    assert [p.name for p in tmp_path.iterdir()] == ["registry.db"]  # no temporary file left


def test_feasts_in_place_write_is_what_tears(tmp_path: Path) -> None:
    """The race the store closes is real: Feast's store truncates, then writes (thousands torn per run)."""
    assert torn_reads(FileRegistryStore, tmp_path / "registry.db") > 0


def test_feasts_warning_that_the_materializing_flag_does_nothing_here_is_filtered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feast_logger = logging.getLogger("feast.repo_config")

    def warnings_of_a_config() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="feast.repo_config"):
            RegistryConfig(path=str(tmp_path / "registry.db"), serve_features_while_materializing=True)
            feast_logger.warning("another warning")
        return [r.getMessage() for r in caplog.records]

    assert warnings_of_a_config() == ["another warning"]
    (ours,) = [f for f in feast_logger.filters if isinstance(f, FileRegistryFlagWarningFilter)]
    feast_logger.removeFilter(ours)
    try:  # without the filter, Feast's warning is there, with the words the filter matches
        seen = warnings_of_a_config()
    finally:
        feast_logger.addFilter(ours)
    assert len(seen) == 2 and seen[0].startswith(FILE_REGISTRY_FLAG_WARNING)
