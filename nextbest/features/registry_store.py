"""The Feast registry file, replaced whole on every write.

Feast's ``FileRegistryStore`` rewrites ``registry.db`` in place: it truncates the file, then writes. A reader
that refreshes its registry cache in between (a serving process's store, while ``materialize`` records its
interval in another) parses zero bytes as an EMPTY registry and keeps it for ``cache_ttl_seconds``: every
feature view is then "not found". ``AtomicFileRegistryStore`` writes a temporary file beside the registry and
renames it over the old one (``os.replace``), so a reader sees the old registry or the new one, never a part.
``repo_config`` and ``feature_repo/feature_store.yaml`` name it as the registry's ``registry_store_type``.

They also set ``serve_features_while_materializing``: ``materialize`` marks each view MATERIALIZING in the
registry while it loads it (and leaves the mark when killed), and Feast refuses every online read and
point-in-time retrieval of a view so marked. Feast warns that the flag "typically has no effect" on a file
registry; it has one (a reader's registry cache holds the views' states: ``tests/integration/
test_feature_store.py``), so that warning is filtered out here.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from pathlib import Path

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now

REGISTRY_STORE_TYPE = "nextbest.features.registry_store.AtomicFileRegistryStore"
"""``registry_store_type`` of the nextbest registry (Feast imports the class by this name)."""

FILE_REGISTRY_FLAG_WARNING = "`serve_features_while_materializing` is enabled but `registry_type` is 'file'"
"""The start of Feast's warning that the flag does nothing on a file registry (it does: module docstring)."""


class FileRegistryFlagWarningFilter(logging.Filter):
    """Drops Feast's ``FILE_REGISTRY_FLAG_WARNING`` (installed on its ``feast.repo_config`` logger below)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(FILE_REGISTRY_FLAG_WARNING)


logging.getLogger("feast.repo_config").addFilter(FileRegistryFlagWarningFilter())


class AtomicFileRegistryStore(FileRegistryStore):
    """Feast's file registry store, but every write is a whole-file replace (see the module docstring)."""

    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(registry_proto.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
