"""Values every kind of resource shares: where a desired object came from, and the mark
the tool records on what it manages. Frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """Where a desired object came from."""

    file: str  # as shown to the user
    relative: str  # relative to the manifest directory, recorded in the domain's metadata
    line: int


@dataclass(frozen=True)
class Mark:
    """The tool's element in a managed domain's <metadata>."""

    manifest: str
    spec_hash: str
    commit: str | None
    # The last applied spec (protect, reclaim, ...), as JSON.
    applied: dict[str, Any] = field(compare=False, hash=False)
    instance: str = "default"  # which reconciler instance owns the domain
    corrupt: bool = False  # the element is there but unreadable: never destroyed on its word

