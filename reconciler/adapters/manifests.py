"""The manifest directory: its files read (regular files only) and validated, with the cache of
parsed files. Needs no libvirt."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.adapters import cache, files
from reconciler.adapters.cache import Cache
from reconciler.core.errors import Problem
from reconciler.core.validate.result import DEFAULT_STORAGE_ROOTS, Checked, Validated

if TYPE_CHECKING:
    from reconciler.core.validate.document import Document


def load_desired(path: Path, storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS,
                 memo: Cache | None = None) -> Validated:
    """Every manifest below ``path``, validated. Needs no libvirt.

    With ``memo``: a file whose bytes (and shown path) are unchanged is not parsed again (its
    documents' results come from the cache), so an edit costs only the files it touched; and
    when no file changed, the whole result comes from the cache."""
    return load_keyed(path, storage_roots, memo)[0]


def load_keyed(path: Path, storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS,
               memo: Cache | None = None) -> tuple[Validated, bytes]:
    """``load_desired``, and a digest of everything the result was made from (each file's
    bytes and paths, the storage roots, the problems finding the files), for the plan cache's
    key; empty when not known (no cache, or a file that cannot be read)."""
    if not path.exists():
        return Validated((), (Problem(files.display_path(path), 0, 0, "",
                                      "no such file or directory"),)), b""
    paths, problems = files.manifest_files(path)
    contents, unread = _read_all(path, paths)
    cwd = os.getcwd()
    keyed = [(file, data, _file_key(file, data, path, storage_roots, memo, cwd))
             for file, data in contents]
    whole = None
    if memo is not None and not unread and all(key for _, _, key in keyed):
        whole = cache.digest(repr([key for _, _, key in keyed]).encode(), repr(problems).encode())
        hit = memo.get("manifests", whole)
        if isinstance(hit, Validated):
            return hit, whole  # the per-file table is not even loaded
    problems.extend(unread)
    checked: list[Checked] = []
    for file, data, key in keyed:
        found, documents = _load_file(file, path, storage_roots, memo, data, key)
        problems.extend(found)
        checked.extend(documents)
    from reconciler.core.validate.crossdoc import combine  # (not on a whole-set cache hit)

    validated = combine(checked, problems)
    if memo is not None and whole is not None and not _holds_secrets(memo, checked):
        memo.put("manifests", whole, validated)
        return validated, whole
    return validated, b""


def _holds_secrets(memo: Cache, checked: Iterable[Checked]) -> bool:
    """Results holding cloud-init user data are never written to a cache on disk (a CI runner
    may upload its cache folder); the daemon's cache in memory keeps them."""
    return not memo.memory and any(
        c.vm is not None and c.vm.spec.cloud_init is not None for c in checked)


FileKey = tuple[str, str, bytes, tuple[str, ...]]  # shown path, relative path, digest, roots


def _file_key(file: Path, data: bytes, root: Path, storage_roots: Sequence[str],
              memo: Cache | None, cwd: str) -> FileKey | None:
    """A file's cache key; none without a cache."""
    if not memo:
        return None
    return (files.display_path(file, cwd), files.relative_path(file, root), cache.digest(data),
            tuple(storage_roots))


def _read_all(root: Path, paths: Sequence[Path]) -> tuple[list[tuple[Path, bytes]],
                                                          list[Problem]]:
    """The bytes of each manifest file, and a problem for each file that is not read. Over
    ``files.MAX_TOTAL_BYTES`` in all (by their sizes before reading, or by what was read),
    none is: one problem names the manifest directory."""
    total = files.total_size(paths)
    if total > files.MAX_TOTAL_BYTES:
        return [], [_too_much(root, total)]
    contents: list[tuple[Path, bytes]] = []
    problems: list[Problem] = []
    for file in paths:
        try:
            data = files.read_manifest(file)
        except files.Unreadable as exc:
            problems.append(Problem(files.display_path(file), 0, 0, "", exc.message))
            continue
        contents.append((file, data))
    read = sum(len(data) for _, data in contents)
    if read > files.MAX_TOTAL_BYTES:  # files grew while they were read
        return [], [_too_much(root, read)]
    return contents, problems


def _too_much(root: Path, total: int) -> Problem:
    return Problem(files.display_path(root), 0, 0, "",
                   f"the manifest files hold {total} bytes, more than the limit of "
                   f"{files.MAX_TOTAL_BYTES} bytes for a manifest directory; nothing is read")


def _load_file(file: Path, root: Path, storage_roots: Sequence[str], memo: Cache | None,
               data: bytes, key: FileKey | None,
               ) -> tuple[tuple[Problem, ...], tuple[Checked, ...]]:
    if memo is not None and key is not None:
        hit = memo.get("file", key)
        if isinstance(hit, tuple):
            return hit
    from reconciler.core.validate.checks import check

    documents, problems = load_file(file, root, data)
    result = (tuple(problems), tuple(check(doc, storage_roots) for doc in documents))
    if memo is not None and key is not None and not _holds_secrets(memo, result[1]):
        memo.put("file", key, result)
    return result



def load_file(path: Path, root: Path,
              data: bytes | None = None) -> tuple[list[Document], list[Problem]]:
    """Documents of one file (its bytes: ``data``, or read here with ``files.read_manifest``:
    a regular file within the byte limit), or the problem that stops it from being read."""
    shown = files.display_path(path)
    if data is None:
        try:
            data = files.read_manifest(path)
        except files.Unreadable as exc:
            return [], [Problem(shown, 0, 0, "", exc.message)]
    from reconciler.core.validate.document import parse_bytes  # YAML: only when one is parsed

    return parse_bytes(data, shown, files.relative_path(path, root))


def load_tree(root: Path) -> tuple[list[Document], list[Problem]]:
    """All documents below ``root`` (a folder or one file) and every problem met reading them,
    within the same byte limits as ``load_desired``."""
    if not root.exists():
        return [], [Problem(files.display_path(root), 0, 0, "", "no such file or directory")]
    documents: list[Document] = []
    paths, problems = files.manifest_files(root)
    contents, unread = _read_all(root, paths)
    problems.extend(unread)
    for path, data in contents:
        docs, probs = load_file(path, root, data)
        documents.extend(docs)
        problems.extend(probs)
    return documents, problems
