"""Which files are manifests, and a digest of them all. No YAML here: a cached plan needs only
this."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.errors import Problem


def manifest_files(root: Path) -> tuple[list[Path], list[Problem]]:
    """Every *.yaml / *.yml below root, skipping names that start with a dot, and the folders
    that could not be read (a manifest set with a hole in it must not destroy anything). Symlinked
    folders are followed, each real folder once. Sorted."""
    if root.is_file():
        return [root], []
    found: list[Path] = []
    problems: list[Problem] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(exc: OSError) -> None:
        shown = display_path(Path(exc.filename)) if exc.filename else display_path(root)
        problems.append(Problem(shown, 0, 0, "", f"cannot read folder: {exc.strerror or exc}"))

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError as exc:
            unreadable(exc)
            dirs[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:  # a symlink loop, or a folder linked twice
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(folder) / name
            for name in files
            if not name.startswith(".") and name.endswith((".yaml", ".yml"))
        )
    return sorted(found), problems


def display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def relative_path(path: Path, root: Path) -> str:
    """A manifest's path as recorded in the domain's metadata: relative to the manifest
    directory."""
    return path.name if root.is_file() else str(path.relative_to(root))
