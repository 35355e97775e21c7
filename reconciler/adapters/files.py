"""Which files are manifests, and reading them: regular files only, never blocking, within the
byte limits. No YAML here: a cached plan needs only this."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from reconciler.core.errors import Problem

MiB = 1 << 20
# The most one manifest file may hold, and all of them together (bytes). A file or directory
# over its limit is refused before anything of it is parsed: YAML costs ~15 bytes of memory per
# byte of small keys (100 MB took 1.4 GB and 7.5 s), and an endless file (a FIFO, /dev/zero)
# must not be read at all. 1,000 VMs with cloud-init user data fit in a few MiB.
MAX_FILE_BYTES = 8 * MiB
MAX_TOTAL_BYTES = 64 * MiB
MANIFEST_SUFFIXES = (".yaml", ".yml")

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class Unreadable(Exception):
    """A manifest path that is not read: ``message`` says why (no file name in it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def not_a_file(mode: int) -> str | None:
    """Why a path of this ``st_mode`` is not read as a manifest, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return FOLDER_NAMED_LIKE_A_MANIFEST
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return (f"not a regular file ({kind}); only regular files are read as manifests: replace it "
            "with a file or remove it")


FOLDER_NAMED_LIKE_A_MANIFEST = ("a folder with a manifest's name; rename it (a folder's name "
                                "must not end in .yaml or .yml)")


def too_large(size: int | None, limit: int) -> str:
    said = f"{size} bytes, more" if size is not None else "more"
    return f"{said} than the limit of {limit} bytes for one manifest file; split it, or remove it"


def read_manifest(path: Path, limit: int | None = None) -> bytes:
    """The bytes of the manifest file ``path`` (a symbolic link is followed), at most ``limit``
    bytes (default ``MAX_FILE_BYTES``).

    Only a regular file is read: anything else is never opened (a FIFO would block, a device
    could be endless or act on being opened), and a path that changes kind between that check
    and the open is opened without blocking (``O_NONBLOCK``) and checked again on the open file
    (``fstat``). At most ``limit`` + 1 bytes are read, so a file growing while it is read is
    caught too. Raises ``Unreadable``."""
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        why = not_a_file(os.stat(path).st_mode)
        if why:
            raise Unreadable(why)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise Unreadable(_cannot_read(exc)) from exc
    try:
        info = os.fstat(fd)
        why = not_a_file(info.st_mode)
        if why:
            raise Unreadable(why)
        if info.st_size > limit:
            raise Unreadable(too_large(info.st_size, limit))
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise Unreadable(too_large(None, limit))
        return b"".join(chunks)
    except OSError as exc:
        raise Unreadable(_cannot_read(exc)) from exc
    finally:
        os.close(fd)


def _cannot_read(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        reason += " (it vanished while being read)"
    return f"cannot read: {reason}"


def total_size(paths: Iterable[Path]) -> int:
    """The bytes of the files ``paths`` together, as their sizes say now. A path that is not
    read counts 0 (it cannot be, or is over ``MAX_FILE_BYTES``: reading it says why)."""
    total = 0
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES:
            total += info.st_size
    return total


def manifest_files(root: Path) -> tuple[list[Path], list[Problem]]:
    """Every *.yaml / *.yml below root, skipping names that start with a dot, and the problems
    that leave a hole in the set (a manifest set with a hole must not destroy anything): a folder
    that cannot be read, a broken symbolic link, a link out of the manifest directory (a manifest
    repository must not make the tool read the host's files), a path with a manifest's name that
    is no regular file (a folder, a FIFO, a socket, a device; never opened). Links inside it are
    followed, each real folder once. Sorted.

    ``root`` itself: a regular file is the one manifest; a folder is walked, unless its name is a
    manifest's (``apply web.yaml`` meant a file: read as the manifest directory it would destroy
    every VM not in it); anything else is a problem."""
    try:
        mode = os.stat(root).st_mode
    except OSError as exc:
        return [], [Problem(display_path(root), 0, 0, "", exc.strerror or str(exc))]
    if stat.S_ISREG(mode):
        return [root], []
    if not stat.S_ISDIR(mode) or root.name.endswith(MANIFEST_SUFFIXES):
        return [], [Problem(display_path(root), 0, 0, "", not_a_file(mode) or "")]
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
            manifest = name.endswith(MANIFEST_SUFFIXES)
            if is_folder:
                if link and not usable_link(path):
                    continue
                if manifest:  # where a file was: its VMs are not gone
                    problem(path, FOLDER_NAMED_LIKE_A_MANIFEST)
                else:
                    folders.append(path)
                continue
            if link:
                if manifest and not usable_link(path):
                    continue
                if not manifest and "." not in name and not os.path.exists(path):
                    # Broken: it may have been a folder of manifests. (A link to a README or a
                    # LICENSE elsewhere in the repository is no hole.)
                    usable_link(path)
            if manifest:
                why = _not_a_regular_file(entry)
                if why:
                    problem(path, why)
                else:
                    found.append(Path(path))
        # Depth first, by name: of a folder reached twice (through a link), the path first by
        # name is the one used.
        stack.extend(reversed(folders))
    return sorted(found), problems


def _not_a_regular_file(entry: os.DirEntry[str]) -> str | None:
    """Why a listed manifest is no regular file (a FIFO, a socket, a device), or None. One that
    vanished since the listing is kept: reading it says so."""
    try:
        if entry.is_file():  # from the listing's file type, unless it is a link
            return None
        return not_a_file(entry.stat().st_mode)
    except OSError:
        return None


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
