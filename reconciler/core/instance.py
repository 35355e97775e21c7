"""A reconciler instance's name: the tenant's name on a shared host. Pure.

It is written into every domain, network and pool the instance manages, names its writer lock
(``/run/reconciler/<instance>.lock``) and its state file (``<state dir>/status/<instance>.json``),
and a pool's marker volume (``.reconciler-<instance>``); so it must be one safe file name.
"""

from __future__ import annotations

import re

MAX_LENGTH = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def problem(name: str) -> str | None:
    """Why ``name`` cannot be an instance name (None: it can): 1 to 64 characters, letters,
    digits, ``-``, ``_`` and ``.``, starting with a letter or digit (so never ``.``, ``..``, a
    hidden file or a path). Pure."""
    if _NAME.fullmatch(name) and len(name) <= MAX_LENGTH:
        return None
    return (f"instance name {name!r} is not allowed: use 1 to {MAX_LENGTH} letters, digits, "
            "'-', '_' or '.', starting with a letter or digit (it names the instance's lock "
            "and state files)")
