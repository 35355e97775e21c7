"""Which files are manifests, and a digest of them all. No YAML here: a cached plan needs only
this."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.errors import Problem


def manifest_files(root: Path) -> tuple[list[Path], list[Problem]]:
    """Every *.yaml / *.yml below root, skipping names that start with a dot, and the problems
    that leave a hole in the set (a manifest set with a hole must not destroy anything): a folder
    that cannot be read, a broken symbolic link, a link out of the manifest directory (a manifest
    repository must not make the tool read the host's files). Links inside it are followed, each
    real folder once. Sorted."""
    if root.is_file():
        return [root], []
    found: list[Path] = []
    problems: list[Problem] = []
    seen: set[tuple[int, int]] = set()
    inside = os.path.realpath(root)

    def problem(path: str, message: str) -> None:
        problems.append(Problem(display_path(Path(path)), 0, 0, "", message))

    def unreadable(exc: OSError) -> None:
        problem(exc.filename or str(root), f"cannot read folder: {exc.strerror or exc}")

    def usable_link(path: str) -> bool:
        if not os.path.exists(path):
            problem(path, "broken symbolic link: its target cannot be read; fix or remove it")
            return False
        real = os.path.realpath(path)
        if real != inside and not real.startswith(inside.rstrip(os.sep) + os.sep):
            problem(path, f"symbolic link to {real}, outside the manifest directory; copy the "
                          "files in, or point the reconciler at a folder that holds them all")
            return False
        return True

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
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (not os.path.islink(os.path.join(folder, d))
                              or usable_link(os.path.join(folder, d))))
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            manifest = name.endswith((".yaml", ".yml"))
            if os.path.islink(path):
                if manifest and not usable_link(path):
                    continue
                if not manifest and "." not in name and not os.path.exists(path):
                    # Broken: it may have been a folder of manifests. (A link to a README or a
                    # LICENSE elsewhere in the repository is no hole.)
                    usable_link(path)
            if manifest:
                found.append(Path(path))
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
