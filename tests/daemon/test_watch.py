"""The manifest directory replaced under the daemon (deploy tools do: removed and made again, a
symlink swapped as Capistrano does, moved away and another moved in): the watch follows it,
and edits wake the daemon at once, not at the next resync (30 s in these tests)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import daemonproc
import pytest
from conftest import vm_manifest, write_manifest
from daemonproc import wait_for

daemon_factory = daemonproc.daemon_factory  # the fixture

SOON = 10.0  # seconds; well before the resync


def _recreate(tmp_path: Path, watched: Path, fill: Callable[[Path], None]) -> Path:
    """rm -rf DIR; mkdir DIR; fill it."""
    shutil.rmtree(watched)
    watched.mkdir()
    fill(watched)
    return watched


def _swap_symlink(tmp_path: Path, watched: Path, fill: Callable[[Path], None]) -> Path:
    """`ln -sfn releases/2 current` (a new link renamed over the old one)."""
    release = tmp_path / "releases" / "2"
    release.mkdir(parents=True)
    fill(release)
    link = tmp_path / "current.new"
    os.symlink(release, link)
    os.replace(link, watched)
    return release


def _move_in(tmp_path: Path, watched: Path, fill: Callable[[Path], None]) -> Path:
    """mv DIR DIR.old; mv staged DIR."""
    staged = tmp_path / "staged"
    staged.mkdir()
    fill(staged)
    watched.rename(tmp_path / "manifests.old")
    staged.rename(watched)
    return watched


@pytest.mark.parametrize("replace", [_recreate, _swap_symlink, _move_in],
                         ids=["removed-and-made-again", "symlink-swapped", "moved-away"])
def test_a_replaced_manifest_directory_is_watched_again(host, tmp_path, daemon_factory,
                                                        replace):
    keep = vm_manifest(f"{host.prefix}k", state="stopped")
    if replace is _swap_symlink:
        first = tmp_path / "releases" / "1"
        write_manifest(first, "k.yaml", keep)
        watched = tmp_path / "current"
        os.symlink(first, watched)
    else:
        watched = tmp_path / "manifests"
        write_manifest(watched, "k.yaml", keep)
    daemon = daemon_factory(watched, host.uri)
    daemon.wait_ready()
    assert host.exists(f"{host.prefix}k")

    moved = f"{host.prefix}n"

    def fill(folder: Path) -> None:
        write_manifest(folder, "k.yaml", keep)
        write_manifest(folder, "n.yaml", vm_manifest(moved, state="stopped"))

    folder = replace(tmp_path, watched, fill)
    assert wait_for(lambda: host.exists(moved), SOON), daemon.output()  # the change itself
    time.sleep(1.0)
    edited = f"{host.prefix}e"  # and an edit in the new directory afterwards
    write_manifest(folder, "e.yaml", vm_manifest(edited, state="stopped"))
    assert wait_for(lambda: host.exists(edited), SOON), daemon.output()
    assert daemon.stop() == 0
