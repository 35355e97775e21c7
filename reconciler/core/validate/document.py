"""Parse YAML manifests, keeping the line and column of every node. PyYAML's C parser."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from reconciler.core.errors import Problem

try:
    _SafeLoader: type = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _SafeLoader = yaml.SafeLoader

_TAGS: dict[tuple[str, object], str] = {}  # plain scalars' resolved tags, across files
_MAX_TAGS = 10_000


# The base is picked at run time, so mypy sees Any (and yaml's own resolve() is unannotated).
class _Loader(_SafeLoader):  # type: ignore[misc]
    """The safe loader, remembering which tag each scalar resolves to: manifests repeat the same
    few words (field names, units, enum values), and resolving is the parser's slowest Python
    step. A scalar's tag depends only on its text and on how it was written (no path
    resolvers are registered on the safe loader)."""

    def resolve(self, kind: type, value: object, implicit: object) -> str:
        if kind is not yaml.ScalarNode or not isinstance(value, str) or self.yaml_path_resolvers:
            resolved: str = super().resolve(kind, value, implicit)
            return resolved
        key = (value, implicit)
        tag = _TAGS.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_TAGS) < _MAX_TAGS and len(value) <= 64:
                _TAGS[key] = tag
        return tag

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """One YAML document of a manifest file, with the position of each field."""

    file: str  # the path as shown to the user
    relative: str  # relative to the manifest directory
    index: int
    data: object
    positions: dict[FieldPath, tuple[int, int]] = field(compare=False, repr=False)
    # Reading it already found a problem (a duplicate key): its name is claimed and its fields
    # are checked, but it never becomes a desired resource.
    flawed: bool = field(default=False, compare=False)

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


def parse(text: str, shown: str, relative: str) -> tuple[list[Document], list[Problem]]:
    """The documents of one manifest file's text, each field with its line and column, and the
    problems met. ``shown``: the path as messages give it; ``relative``: the path below the
    manifest directory. Pure."""
    documents: list[Document] = []
    problems: list[Problem] = []
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            positions: dict[FieldPath, tuple[int, int]] = {}
            found: list[Problem] = []
            try:
                data = _build(node, (), positions, shown, found, loader, [_MAX_NODES])
            except _Unusual:
                # Merge keys, tags, non-string keys, recursion, huge or deep documents: index,
                # then let PyYAML construct the document (it may also reject it).
                positions, found = {}, []
                try:
                    _index_positions(node, (), positions, shown, found, set(), [_MAX_NODES])
                except _Unusable as exc:
                    mark = (exc.node or node).start_mark
                    problems.append(Problem(shown, mark.line + 1, mark.column + 1, "",
                                            exc.message))
                    index += 1
                    continue
                try:
                    data = loader.construct_document(node)
                except (ValueError, TypeError, OverflowError):  # int("hunter2") under !!int
                    mark = node.start_mark
                    problems.append(Problem(shown, mark.line + 1, mark.column + 1, "",
                                            "a tagged value could not be built (a tag such as "
                                            "!!int or !!binary on a value that is not one); "
                                            "remove the tag or fix the value"))
                    index += 1
                    continue
            problems.extend(found)
            if data is None:  # a truncated file must not read as "these VMs are gone"
                problems.append(Problem(shown, _opening(text, node.start_mark.line), 1, "",
                                        "empty document (nothing between two '---'); finish it "
                                        "or remove a '---'"))
            else:
                documents.append(Document(shown, relative, index, data, positions,
                                          flawed=bool(found)))
            index += 1
        if index == 0:
            problems.append(Problem(shown, 0, 0, "", "the file holds no manifest; add one or "
                                                     "delete the file"))
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


def _opening(text: str, line: int) -> int:
    """The line (1-based) of the ``---`` that opens an empty document whose node YAML places at
    ``line`` (0-based: the next ``---``, or the end of the file)."""
    lines = text.splitlines()
    for index in range(min(line, len(lines)) - 1, -1, -1):
        if lines[index].startswith("---"):
            return index + 1
    return line + 1


_MAX_NODES = 100_000  # after expanding aliases: stops "billion laughs" documents
_MAX_DEPTH = 64


class _Unusable(Exception):
    """A document that cannot be used at all (recursive, or too big once aliases expand)."""

    def __init__(self, node: yaml.Node | None, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


class _Unusual(Exception):
    """A document the one-walk reader leaves to PyYAML's constructor."""


_Node = yaml.ScalarNode | yaml.SequenceNode | yaml.MappingNode  # what the composer makes
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# Plain scalars YAML resolves to something else than a string; built by PyYAML's constructor.
_SCALARS = {f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float", "null", "timestamp")}


def _build(
    node: _Node, path: FieldPath, out: dict[FieldPath, tuple[int, int]], shown: str,
    problems: list[Problem], loader: yaml.BaseLoader, budget: list[int],
) -> object:
    """The document's data and, in the same walk, where each field starts (as
    ``_index_positions`` records it) and its duplicate keys. Only plain mappings with string
    keys, lists and plain scalars are built here; anything else raises ``_Unusual``. Aliases are
    built again each time they are used (the node budget bounds that)."""
    out.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    budget[0] -= 1
    if budget[0] < 0:
        raise _Unusual
    kind, tag = node.id, node.tag
    if kind == "scalar":
        if tag == _STR:
            return node.value
        if tag not in _SCALARS:
            raise _Unusual
        try:
            return loader.yaml_constructors[tag](loader, node)
        except Exception as exc:
            raise _Unusual from exc
    if len(path) > _MAX_DEPTH:  # also where an alias refers to a node that contains it
        raise _Unusual
    if kind == "mapping" and tag == _MAP:
        data: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.id != "scalar" or key_node.tag != _STR:
                raise _Unusual  # a merge key (<<), a number, a list as a key...
            key = key_node.value
            child = (*path, key)
            position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in data:
                problems.append(Problem(shown, *position, dotted(child), "duplicate key"))
            out[child] = position
            if value_node.id == "scalar" and value_node.tag == _STR:  # most values: inline
                budget[0] -= 1
                if budget[0] < 0:
                    raise _Unusual
                data[key] = value_node.value
            else:
                data[key] = _build(value_node, child, out, shown, problems, loader, budget)
        return data
    if kind == "sequence" and tag == _SEQ:
        return [_build(item, (*path, i), out, shown, problems, loader, budget)
                for i, item in enumerate(node.value)]
    raise _Unusual


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
