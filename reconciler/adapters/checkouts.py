"""Pull mode's checkouts (`reconciler run --git URL`, ``adapters.gitsync`` fetches them): each
commit exported into a directory of its own, synced to disk before it is named; the one in force
behind a symbolic link swapped atomically; and the pull state `reconciler status` shows.

Per instance (``Layout``)::

    <state dir>/git/<instance>.json           the pull state (``write_state``)
    <state dir>/git/<instance>/repo           the bare clone (``gitsync.Git``)
    <state dir>/git/<instance>/checkouts/<c>  one exported commit each (``checkout_name``)
    <state dir>/git/<instance>/current        -> checkouts/<c>: the commit in force
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler.adapters import atomic
from reconciler.core import instance as instance_name
from reconciler.core.errors import PermanentError

MAX_STATE_BYTES = 4 << 20  # a pull state file larger than this is not one the tool wrote
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _sync_tree(root: Path) -> None:
    """fsync every regular file and folder below ``root`` (links are not followed): a crash
    after the switch must not leave a manifest empty (it would read as VMs removed)."""
    for folder, _, names in os.walk(root):
        for name in [*names, "."]:
            path = os.path.join(folder, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:  # a symbolic link
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkout_name(sha: str, path: str) -> str:
    """The directory a commit's export of ``path`` goes to: the commit, and for a folder
    other than the root a digest of its name (an export holds only that folder)."""
    if path in (".", ""):
        return sha
    return f"{sha}-{hashlib.blake2b(path.encode(), digest_size=4).hexdigest()}"


class Layout:
    """The directories of one instance's pull mode (see the module's text)."""

    def __init__(self, state_dir: Path, instance: str) -> None:
        problem = instance_name.problem(instance)
        if problem:
            raise PermanentError(problem)
        self.base = state_dir / "git" / instance
        self.state = state_dir / "git" / f"{instance}.json"
        self.repo = self.base / "repo"
        self.checkouts = self.base / "checkouts"
        self.current = self.base / "current"

    def in_force(self) -> str | None:
        """The checkout ``current`` leads to (its directory name), or None."""
        try:
            name = PurePosixPath(os.readlink(self.current)).name
        except OSError:
            return None
        return name if _COMMIT.match(name[:40]) and (self.checkouts / name).is_dir() else None

    def staging(self, name: str) -> Path:
        """An empty directory to export into, beside the checkouts."""
        self.checkouts.mkdir(parents=True, exist_ok=True)
        folder = self.checkouts / f".{name}.tmp"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        return folder

    def keep(self, staged: Path, name: str) -> None:
        """Move an export into place as checkout ``name`` (replacing none), every file and
    folder of it on disk first."""
        target = self.checkouts / name
        if target.exists():
            shutil.rmtree(staged)
            return
        _sync_tree(staged)
        os.rename(staged, target)
        _sync_folder(self.checkouts)

    def switch(self, name: str) -> None:
        """Make checkout ``name`` the one in force: a new link renamed over ``current``, so a
        reader of ``current`` sees the old checkout or the new one, never a mix."""
        link = self.base / "current.tmp"
        link.unlink(missing_ok=True)
        os.symlink(f"checkouts/{name}", link)
        os.replace(link, self.current)
        _sync_folder(self.base)

    def prune(self, keep: set[str]) -> None:
        """Remove every checkout but ``keep`` (and any export left half done)."""
        try:
            entries = list(os.scandir(self.checkouts))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name not in keep:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    Path(entry.path).unlink(missing_ok=True)

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)


def write_state(layout: Layout, document: Mapping[str, Any]) -> None:
    """Replace the pull state file atomically (what `reconciler status` shows)."""
    layout.state.parent.mkdir(parents=True, exist_ok=True)
    atomic.write(layout.state, json.dumps(document, indent=2).encode(), sync=True)


def read_state(state_dir: Path, instance: str) -> dict[str, Any] | None:
    """The pull state of ``instance``, or None when it has none (no pull mode). Raises
    PermanentError when the file is not one the tool wrote."""
    target = Layout(state_dir, instance).state
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PermanentError(f"cannot read {target}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_STATE_BYTES + 1)
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise PermanentError(f"{target} is not a pull state reconciler wrote: {exc}") from exc
    if not isinstance(document, dict) or len(data) > MAX_STATE_BYTES:
        raise PermanentError(f"{target} is not a pull state reconciler wrote")
    return document


def forget(state_dir: Path, instance: str) -> None:
    """Remove the pull state file (the daemon runs without pull mode: it would be stale)."""
    Layout(state_dir, instance).state.unlink(missing_ok=True)
