"""What keeps a run from destroying what it should not: the guards of SPEC section 5."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Guards:
    """What keeps a run from destroying what it should not."""

    problems: int = 0  # manifest problems in this run: nothing is destroyed
    hold_destroys: str = ""  # any other reason to destroy nothing this run
    max_destroy: int = 5
    allow_empty: bool = False


DEFAULT_GUARDS = Guards()
