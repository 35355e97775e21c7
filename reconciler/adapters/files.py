"""Which files are manifests, and a digest of them all. No YAML here: a cached plan needs only
this."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from reconciler.core.errors import Problem


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
    real_root = os.path.realpath(root)

    def problem(path: str, message: str) -> None:
        problems.append(Problem(display_path(Path(path)), 0, 0, "", message))

    def unreadable(exc: OSError) -> None:
        problem(exc.filename or str(root), f"cannot read folder: {exc.strerror or exc}")

    def usable_link(path: str) -> bool:
        if not os.path.exists(path):
            problem(path, "broken symbolic link: its target cannot be read; fix or remove it")
            return False
        real = os.path.realpath(path)
        if real != real_root and _below(real, real_root) is None:
            problem(path, f"symbolic link to {real}, outside the manifest directory; copy the "
                          "files in, or point the reconciler at a folder that holds them all")
            return False
        return True

    stack = [str(root)]  # not recursion: no depth limit
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            unreadable(exc)
            continue
        if (info.st_dev, info.st_ino) in seen:  # a symlink loop, or a folder linked twice
            continue
        seen.add((info.st_dev, info.st_ino))
        folders = []
        for entry in entries:
            name, path = entry.name, entry.path
            if name.startswith("."):
                continue
            link = entry.is_symlink()  # from the listing: no system call
            try:
                is_folder = entry.is_dir()  # follows a link
            except OSError:
                is_folder = False
            if is_folder:
                if not link or usable_link(path):
                    folders.append(path)
                continue
            manifest = name.endswith((".yaml", ".yml"))
            if link:
                if manifest and not usable_link(path):
                    continue
                if not manifest and "." not in name and not os.path.exists(path):
                    # Broken: it may have been a folder of manifests. (A link to a README or a
                    # LICENSE elsewhere in the repository is no hole.)
                    usable_link(path)
            if manifest:
                found.append(Path(path))
        # Depth first, by name: of a folder reached twice (through a link), the path first by
        # name is the one used.
        stack.extend(reversed(folders))
    return sorted(found), problems


def display_path(path: Path | str, cwd: str | None = None) -> str:
    """``path`` relative to the working folder (``cwd``, else asked) when it lies inside it, else
    as given."""
    cwd = cwd or os.getcwd()
    full = os.path.normpath(os.path.join(cwd, path))
    if full == cwd:
        return "."
    below = _below(full, cwd)
    return str(path) if below is None else below


def relative_path(path: Path, root: Path) -> str:
    """A manifest's path as recorded in the domain's metadata: relative to the manifest
    directory (its name when ``root`` is the file itself)."""
    if str(path) == str(root):
        return path.name
    below = _below(str(path), str(root))
    return str(path.relative_to(root)) if below is None else below


def _below(path: str, folder: str) -> str | None:
    """``path`` relative to ``folder`` when it lies strictly below it (as text: both normalised
    alike), else None."""
    inside = folder if folder.endswith(os.sep) else folder + os.sep
    return path[len(inside):] if path.startswith(inside) else None


def real_paths(paths: Iterable[str]) -> dict[str, str]:
    """Each path with its symbolic links resolved (as far as they exist), on this machine."""
    return {path: os.path.realpath(path) for path in paths}


def read_routes() -> str:
    """The text of this machine's ``/proc/net/route`` ("" where it cannot be read)."""
    try:
        with open("/proc/net/route", encoding="ascii", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""
