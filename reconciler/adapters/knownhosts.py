"""The Hosts a reconciler instance has seen declared (many hosts): one file per instance,
``<state dir>/hosts/<instance>.json``, a JSON object ``{host name: libvirt URI}``, written
atomically by `apply` and the daemon. A Host whose manifest is removed from the repository
while it still runs VMs is no longer read by anyone's plan; remembering it lets every host keep
looking there before it creates a VM (``pipeline._arrivals``), so that a VM stranded on it is
never made a second time. A remembered Host is forgotten once it answers and runs no VM of the
instance."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from reconciler.adapters import state
from reconciler.core.errors import PermanentError

FOLDER = "hosts"


def path(state_dir: Path, instance: str) -> Path:
    return state.instance_file(state_dir, FOLDER, instance)


def read(state_dir: Path, instance: str) -> dict[str, str]:
    """Host name -> URI of every Host remembered; none when there is no file. Raises
    PermanentError for a file the tool did not write (it never reads as "none known")."""
    target = path(state_dir, instance)
    known = state.read_json(target, "the known hosts", "a known-hosts file")
    if known is None:
        return {}
    if not isinstance(known, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in known.items()):
        raise PermanentError(f"{target}: not a known-hosts file; remove it")
    return known


def remember(state_dir: Path, instance: str, hosts: Mapping[str, str],
             forget: Iterable[str] = ()) -> None:
    """Add ``hosts`` (name -> URI; a Host's URI as last declared) and drop ``forget``; the
    file is written only when that changes it."""
    known = read(state_dir, instance)
    merged = {**known, **hosts}
    for name in forget:
        if name not in hosts:
            merged.pop(name, None)
    if merged == known:
        return
    state.write_json(path(state_dir, instance), merged, sort_keys=True)
