"""The objects the ``feast`` CLI sees in ``feature_repo/``: built once per process from the manifest.

Feast collects objects from every module of the repo and de-duplicates them by identity, so the repo
files share one cached ``Definitions`` instead of building their own copies.
"""

from __future__ import annotations

from functools import cache

from nextbest.features.definitions import Definitions
from nextbest.features.store import load_definitions
from nextbest.settings import get_settings


@cache
def cli_definitions() -> Definitions:
    """Definitions for the settings in the environment (``NEXTBEST_HOME``), built on first use."""
    return load_definitions(get_settings())
