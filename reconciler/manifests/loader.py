"""Read YAML manifests, keeping the line and column of every node. PyYAML's C parser."""

from __future__ import annotations

import os
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
            try:
                _index_positions(node, (), positions, shown, problems, set(), [_MAX_NODES])
            except _Unusable as exc:
                mark = (exc.node or node).start_mark
                problems.append(Problem(shown, mark.line + 1, mark.column + 1, "", exc.message))
                index += 1
                continue
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


_MAX_NODES = 100_000  # after expanding aliases: stops "billion laughs" documents
_MAX_DEPTH = 64


class _Unusable(Exception):
    """A document that cannot be used at all (recursive, or too big once aliases expand)."""

    def __init__(self, node: yaml.Node | None, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


def _index_positions(
    node: yaml.Node, path: FieldPath, out: dict[FieldPath, tuple[int, int]], shown: str,
    problems: list[Problem], ancestors: set[int], budget: list[int],
) -> None:
    """Record where each field starts; report duplicate keys. Aliases are followed once each
    time they are used, as the constructed data repeats them too."""
    out.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    budget[0] -= 1
    if budget[0] < 0:
        raise _Unusable(None, f"the document is too large: more than {_MAX_NODES} nodes once "
                              "its aliases are expanded")
    if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        return
    if id(node) in ancestors:
        raise _Unusable(node, "a YAML alias refers to a node that contains it (recursive)")
    if len(path) > _MAX_DEPTH:
        raise _Unusable(node, f"nested more than {_MAX_DEPTH} levels deep")
    ancestors.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[tuple[str, str]] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: constructing the document reports it
            key = key_node.value
            child = (*path, key)
            position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if (key_node.tag, key) in seen:
                problems.append(Problem(shown, *position, dotted(child), "duplicate key"))
            seen.add((key_node.tag, key))
            out[child] = position
            _index_positions(value_node, child, out, shown, problems, ancestors, budget)
    else:
        for i, item in enumerate(node.value):
            _index_positions(item, (*path, i), out, shown, problems, ancestors, budget)
    ancestors.discard(id(node))


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
