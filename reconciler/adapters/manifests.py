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
from reconciler.core.validate.crossdoc import combine
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
    cwd = os.getcwd()
    keyed = [(file, *_file_key(file, path, storage_roots, memo, cwd)) for file in paths]
    whole = None
    if memo is not None and all(key for _, _, key in keyed):
        whole = cache.digest(repr([key for _, _, key in keyed]).encode(), repr(problems).encode())
        hit = memo.get("manifests", whole)
        if isinstance(hit, Validated):
            return hit, whole  # the per-file table is not even loaded
    checked: list[Checked] = []
    for file, data, key in keyed:
        found, documents = _load_file(file, path, storage_roots, memo, data, key)
        problems.extend(found)
        checked.extend(documents)
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


def _file_key(file: Path, root: Path, storage_roots: Sequence[str],
              memo: Cache | None, cwd: str) -> tuple[bytes | None, FileKey | None]:
    """A file's bytes and its cache key; none without a cache or when it cannot be read (then
    ``load_file`` says why)."""
    if not memo:
        return None, None
    try:
        data = file.read_bytes()
    except OSError:
        return None, None
    return data, (files.display_path(file, cwd), files.relative_path(file, root),
                  cache.digest(data), tuple(storage_roots))


def _load_file(file: Path, root: Path, storage_roots: Sequence[str], memo: Cache | None,
               data: bytes | None, key: FileKey | None,
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
    """Documents of one file (its bytes: ``data``, or read here), or the problem that stops it
    from being read."""
    shown = files.display_path(path)
    try:
        text = path.read_text(encoding="utf-8") if data is None else data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(shown, 0, 0, "", f"cannot read: {exc}")]
    from reconciler.core.validate.document import parse  # YAML: only when a file is parsed

    return parse(text, shown, files.relative_path(path, root))


def load_tree(root: Path) -> tuple[list[Document], list[Problem]]:
    """All documents below ``root`` (a folder or one file) and every problem met reading them."""
    if not root.exists():
        return [], [Problem(files.display_path(root), 0, 0, "", "no such file or directory")]
    documents: list[Document] = []
    paths, problems = files.manifest_files(root)
    for path in paths:
        docs, probs = load_file(path, root)
        documents.extend(docs)
        problems.extend(probs)
    return documents, problems
