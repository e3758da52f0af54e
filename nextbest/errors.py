"""The one base class of errors a user can fix (bad input, a missing step, a service down).

The ``nextbest`` command prints a ``UserError`` as one line on stderr and exits non-zero; any other
exception is a bug and keeps its traceback. Each stage's own error classes (``ContractError``,
``ConfigError``, ``DbtError``, ...) derive from it.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; its message names the file / column / rule / rows or the next step."""
