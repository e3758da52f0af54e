"""Text that goes into SQL: quoted string literals and identifiers.

Prefer bound parameters (``read_parquet(?)``, ``where x = ?``) wherever DuckDB takes them; these helpers
are for the places that do not (``COPY ... TO '<path>'``, ``SET x = '<value>'``, SQL handed to dbt or
Feast). A path containing a quote or a space stays one literal: nothing is ever pasted raw.
"""

from __future__ import annotations

import os


def sql_literal(text: str | os.PathLike[str]) -> str:
    """A single-quoted SQL string literal of ``text`` (a path is converted with ``str``).

    Single quotes are doubled, so ``sql_literal("it's")`` is ``'it''s'``.
    """
    return "'" + str(text).replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """A double-quoted SQL identifier: ``sql_identifier('a"b')`` is ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'
