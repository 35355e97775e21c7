"""Read YAML manifests, keeping the line and column of every node. PyYAML's C parser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reconciler.errors import Problem

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """One YAML document of a manifest file, with the position of each field."""

    file: str  # the path as shown to the user
    relative: str  # relative to the manifest directory
    index: int
    data: object
    positions: dict[FieldPath, tuple[int, int]] = field(compare=False, repr=False)

    def position(self, path: FieldPath) -> tuple[int, int]:
        """Line and column of ``path``, or of its nearest ancestor that exists."""
        path = tuple(path)
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (1, 1))

    def problem(self, path: FieldPath, message: str) -> Problem:
        line, column = self.position(path)
        return Problem(self.file, line, column, dotted(path), message)


def dotted(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def manifest_files(root: Path) -> list[Path]:
    """Every *.yaml / *.yml below root, skipping names that start with a dot. Sorted."""
    if root.is_file():
        return [root]
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(folder) / name
            for name in files
            if not name.startswith(".") and name.endswith((".yaml", ".yml"))
        )
    return sorted(found)


def display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def load_file(path: Path, root: Path) -> tuple[list[Document], list[Problem]]:
    """Documents of one file, or the problem that stops it from being read."""
    shown = display_path(path)
    relative = path.name if root.is_file() else str(path.relative_to(root))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(shown, 0, 0, "", f"cannot read: {exc}")]
    documents: list[Document] = []
    problems: list[Problem] = []
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            positions: dict[FieldPath, tuple[int, int]] = {}
            problems.extend(_index_positions(node, (), positions, shown))
            data = loader.construct_document(node)
            if data is not None:
                documents.append(Document(shown, relative, index, data, positions))
            index += 1
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        reason = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        message = f"YAML syntax error: {reason}" + (f" ({context})" if context else "")
        return [], [Problem(shown, line, column, "", message)]
    finally:
        loader.dispose()
    return documents, problems


def _index_positions(
    node: yaml.Node, path: FieldPath, out: dict[FieldPath, tuple[int, int]], shown: str
) -> Iterator[Problem]:
    out.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*path, key)
            position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                yield Problem(shown, *position, dotted(child), "duplicate key")
            seen.add(key)
            out[child] = position
            yield from _index_positions(value_node, child, out, shown)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _index_positions(item, (*path, i), out, shown)


def load_tree(root: Path) -> tuple[list[Document], list[Problem]]:
    """All documents below ``root`` (a folder or one file) and every problem met reading them."""
    if not root.exists():
        return [], [Problem(display_path(root), 0, 0, "", "no such file or directory")]
    documents: list[Document] = []
    problems: list[Problem] = []
    for path in manifest_files(root):
        docs, probs = load_file(path, root)
        documents.extend(docs)
        problems.extend(probs)
    return documents, problems
