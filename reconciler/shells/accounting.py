"""What the daemon keeps between reconciles about each resource: what a retry depends on, and
whether a change repaired drift. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from reconciler.core.model.vm import DesiredVM, LiveVM
from reconciler.core.plan import Action, Kind, Resource
from reconciler.core.result import Result


def inputs_key(action: Action, read: Mapping[str, str]) -> str:
    """What a retry depends on: the manifest (its spec hash) and what was read of the
    resource itself: for a VM its domain (``read``: domain name -> a digest of what was read of
    it), for a network or pool its live model (a domain of the same name, maybe another
    tenant's, is not it)."""
    spec = action.desired.spec_hash if action.desired is not None else ""
    if action.resource == Resource.VM:
        seen = read.get(action.name, "")
    else:
        seen = hashlib.blake2b(repr(action.live).encode(), digest_size=8).hexdigest()
    return f"{spec}:{seen}:{action.resource}:{action.kind}"


def is_drift(action: Action, managed_before: dict[str, str]) -> bool:
    """A change the manifest did not ask for: the live side moved away from the applied spec."""
    if not isinstance(action.desired, DesiredVM):
        return False
    if action.kind == Kind.UPDATE and isinstance(action.live, LiveVM) and action.live.mark:
        return action.live.mark.spec_hash == action.desired.spec_hash and action.writes
    if action.kind == Kind.CREATE:
        return managed_before.get(action.name) == action.desired.spec_hash
    return False


def taken(actions: Iterable[Action], results: Iterable[Result]) -> list[Result]:
    """The results (in ``actions``' order) of the actions that were carried out, whatever
    came of them: not those blocked, with nothing to do but wait for a restart, or not started
    (the run was stopped first; a destroy held back after another failed)."""
    return [r for a, r in zip(actions, results, strict=True) if a.writes and r.started]
