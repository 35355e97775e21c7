"""Parse YAML manifests, keeping the line and column of every node. PyYAML's C parser."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

import yaml

from reconciler.core.errors import Problem
from reconciler.core.record import Record

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


@dataclass(frozen=True, eq=False, repr=False)
class Document(Record):
    """One YAML document of a manifest file, with the position of each field."""

    file: str  # the path as shown to the user
    relative: str  # relative to the manifest directory
    index: int
    data: object
    positions: dict[FieldPath, tuple[int, int]] = field(compare=False, repr=False)
    # Reading it already found a problem (a duplicate key): its name is claimed and its fields
    # are checked, but it never becomes a desired resource.
    flawed: bool = field(default=False, compare=False)
    # How YAML 1.1 surprises were written: a plain scalar read as a boolean (yes, off) or as a
    # base-60 number (52:54:00:12:34:56), by field. Messages about the field quote it.
    spelled: dict[FieldPath, str] = field(default_factory=dict, compare=False, repr=False)

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
    """``spec.disks[0].name``. A key YAML read as something else than a string is shown in
    brackets too (``labels[true]``)."""
    out = ""
    for part in path:
        if isinstance(part, str):
            out += f".{part}" if out else part
        elif isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:  # a key YAML read as a boolean, null, a date...
            out += f"[{str(part).lower()}]"
    return out


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def parse_bytes(data: bytes, shown: str, relative: str) -> tuple[list[Document], list[Problem]]:
    """``parse`` of a file's bytes: UTF-8 (a byte order mark allowed), or UTF-16 or UTF-32 with
    their byte order mark (YAML 1.2, section 5.2). Bytes that do not decode are one problem at
    their line and column. Pure."""
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        before = data[:exc.start].decode(encoding, "replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        name = "UTF-8" if encoding == "utf-8" else encoding.upper()
        return [], [Problem(shown, line, column, "",
                            f"not {name} text: byte 0x{data[exc.start]:02x} cannot be decoded; "
                            "save the file as UTF-8")]
    return parse(text, shown, relative)


def parse(text: str, shown: str, relative: str) -> tuple[list[Document], list[Problem]]:
    """The documents of one manifest file's text, each field with its line and column, and the
    problems met. ``shown``: the path as messages give it; ``relative``: the path below the
    manifest directory. Every problem has a line (1 when the file as a whole is meant).

    Empty documents (a trailing ``---``, two in a row, only comments, ``null``) are skipped, as
    kubectl skips them (their index still counts). A file with nothing in it but white space
    is a problem: a file truncated by a failed checkout must not read as "its VMs are gone".
    Aliases are bounded ("billion laughs"): a document expands to at most ``_MAX_NODES``
    nodes, and a file to at most ``_FILE_NODES`` plus one node per character it holds (YAML
    without aliases has fewer; so parsing costs at most in proportion to the bytes read, and
    the byte limits bound it). Pure."""
    documents: list[Document] = []
    problems: list[Problem] = []
    loader = _Loader(text)
    allowed = _FILE_NODES + len(text)
    left = allowed  # nodes, aliases expanded, for the documents still to come
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if left <= 0:
                mark = node.start_mark
                problems.append(Problem(shown, mark.line + 1, mark.column + 1, "",
                                        _too_large(allowed, per_document=False)))
                break
            positions: dict[FieldPath, tuple[int, int]] = {}
            spelled: dict[FieldPath, str] = {}
            found: list[Problem] = []
            limit = min(_MAX_NODES, left)
            budget = [limit]
            try:
                data = _build(node, (), positions, shown, found, loader, budget, spelled)
            except _Unusual:
                # Merge keys, tags, non-string keys, recursion, huge or deep documents: index,
                # then let PyYAML construct the document (it may also reject it).
                positions, spelled, found, budget = {}, {}, [], [limit]
                try:
                    _index_positions(node, (), positions, shown, found, set(), budget, spelled,
                                     loader)
                except _Unusable as exc:
                    mark = (exc.node or node).start_mark
                    message = exc.message or _too_large(
                        limit if limit == _MAX_NODES else allowed, limit == _MAX_NODES)
                    problems.append(Problem(shown, mark.line + 1, mark.column + 1, "",
                                            message))
                    if not exc.message and limit < _MAX_NODES:
                        break  # the file's allowance is spent: the rest is not read
                    left -= limit - max(budget[0], 0)
                    index += 1
                    continue
                try:
                    data = loader.construct_document(node)
                except yaml.YAMLError:
                    raise
                except Exception as exc:  # !!int hunter2, an empty !!int
                    loader.constructed_objects.clear()  # the next document starts afresh
                    loader.recursive_objects.clear()
                    mark = node.start_mark
                    problems.append(Problem(shown, mark.line + 1, mark.column + 1, "",
                                            _unbuildable(exc)))
                    index += 1
                    continue
            left -= limit - budget[0]
            problems.extend(found)
            if data is not None:  # an empty document: skipped
                documents.append(Document(shown, relative, index, data, positions,
                                          flawed=bool(found), spelled=spelled))
            index += 1
        if index == 0 and not text.strip(" \t\r\n\ufeff"):
            problems.append(Problem(shown, 1, 1, "", "the file is empty; add a manifest, or "
                                                     "delete the file"))
    except yaml.YAMLError as exc:
        return [], [_syntax_error(exc, text, shown)]
    except RecursionError:  # PyYAML's pure-Python composer, where libyaml is missing
        return [], [Problem(shown, 1, 1, "", f"nested more than {_MAX_DEPTH} levels deep")]
    finally:
        loader.dispose()
    return documents, problems


def _too_large(limit: int, per_document: bool) -> str:
    if per_document:
        return (f"the document is too large: more than {limit} nodes once its aliases are "
                "expanded")
    return (f"the file is too large once its aliases are expanded: more than {limit} nodes "
            f"({_FILE_NODES} and one per character of the file); expand fewer aliases, or "
            "split it")


def _unbuildable(exc: Exception) -> str:
    if isinstance(exc, ValueError) and "digits" in str(exc):  # int(): over 4300 digits
        return "a number with more than 4300 digits; no field takes one"
    return ("a tagged value could not be built (a tag such as !!int or !!binary on a value "
            "that is not one); remove the tag or fix the value")


def _syntax_error(exc: yaml.YAMLError, text: str, shown: str) -> Problem:
    """A YAML error at its line and column (1:1 when YAML gives none)."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        # its position: libyaml counts bytes of UTF-8, PyYAML's own reader characters
        before = (text.encode("utf-8", "surrogatepass")[:exc.position].decode("utf-8", "replace")
                  if _SafeLoader is not yaml.SafeLoader else text[:exc.position])
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return Problem(shown, line, column, "",
                       f"YAML syntax error: the character U+{char:04X} is not allowed in YAML "
                       f"({exc.reason}); remove it")
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    reason = getattr(exc, "problem", None) or str(exc).split("\n")[0]
    context = getattr(exc, "context", None)
    return Problem(shown, line, column, "",
                   f"YAML syntax error: {reason}" + (f" ({context})" if context else ""))


_MAX_NODES = 100_000  # after expanding aliases: stops "billion laughs" documents
_FILE_NODES = 1000  # a file's allowance of nodes besides one per character
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


_MERGE = "tag:yaml.org,2002:merge"
_BOOL = "tag:yaml.org,2002:bool"
_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _spell(node: yaml.Node, path: FieldPath, spelled: dict[FieldPath, str]) -> None:
    """Note a plain scalar that YAML 1.1 reads as a boolean though it is not spelled true or
    false (yes, off, On), or as a base-60 number (52:54:00:12:34:56)."""
    if not isinstance(node, yaml.ScalarNode) or node.style:  # quoted or a block: as written
        return
    tag, text = node.tag, node.value
    if (tag == _BOOL and text.lower() not in ("true", "false")) or (
            tag in _NUMBERS and ":" in text):
        spelled[path] = text


def _build(
    node: _Node, path: FieldPath, out: dict[FieldPath, tuple[int, int]], shown: str,
    problems: list[Problem], loader: yaml.BaseLoader, budget: list[int],
    spelled: dict[FieldPath, str],
) -> object:
    """The document's data and, in the same walk, where each field starts (as
    ``_index_positions`` records it), its duplicate keys and its YAML 1.1 surprises
    (``spelled``). Only plain mappings with string keys, lists and plain scalars are built
    here; anything else raises ``_Unusual``. Aliases are built again each time they are used
    (the node budget bounds that)."""
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
            value = loader.yaml_constructors[tag](loader, node)
        except Exception as exc:
            raise _Unusual from exc
        _spell(node, path, spelled)
        return value
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
                data[key] = _build(value_node, child, out, shown, problems, loader, budget,
                                   spelled)
        return data
    if kind == "sequence" and tag == _SEQ:
        return [_build(item, (*path, i), out, shown, problems, loader, budget, spelled)
                for i, item in enumerate(node.value)]
    raise _Unusual


def _key(node: yaml.ScalarNode, loader: yaml.BaseLoader) -> str | int:
    """A scalar key as the constructed document has it (``on`` is True, ``1`` is 1; typed as
    field paths are, though a key may also be null or a date)."""
    if node.tag in _SCALARS:
        try:
            key: str | int = loader.yaml_constructors[node.tag](loader, node)
            return key
        except Exception:
            return str(node.value)
    return str(node.value)


def _index_positions(
    node: yaml.Node, path: FieldPath, out: dict[FieldPath, tuple[int, int]], shown: str,
    problems: list[Problem], ancestors: set[int], budget: list[int],
    spelled: dict[FieldPath, str], loader: yaml.BaseLoader, merged: bool = False,
) -> None:
    """Record where each field starts; report duplicate keys; note YAML 1.1 surprises. Aliases
    are followed once each time they are used, as the constructed data repeats them too. The
    keys a merge key (``<<``) brings in are placed where the merged document has them, unless
    the mapping sets them itself (``merged``: a mapping being merged into ``path``)."""
    if not merged:
        out.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    budget[0] -= 1
    if budget[0] < 0:
        raise _Unusable(None, "")  # the caller says which bound it met
    if isinstance(node, yaml.ScalarNode):
        _spell(node, path, spelled)
    if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        return
    if id(node) in ancestors:
        raise _Unusable(node, "a YAML alias refers to a node that contains it (recursive)")
    if len(path) > _MAX_DEPTH:
        raise _Unusable(node, f"nested more than {_MAX_DEPTH} levels deep")
    ancestors.add(id(node))
    if isinstance(node, yaml.MappingNode):
        pairs = [(k, v) for k, v in node.value if k.tag == _MERGE]  # merged first: the
        pairs += [(k, v) for k, v in node.value if k.tag != _MERGE]  # mapping's own keys win
        seen: set[tuple[str, str]] = set()
        for key_node, value_node in pairs:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: constructing the document reports it
            if key_node.tag == _MERGE:
                sources = (value_node.value if isinstance(value_node, yaml.SequenceNode)
                           else [value_node])
                for source in sources:
                    _index_positions(source, path, out, shown, problems, ancestors, budget,
                                     spelled, loader, merged=True)
                continue
            key = _key(key_node, loader)
            child = (*path, key)
            position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not merged:
                if (key_node.tag, key_node.value) in seen:
                    problems.append(Problem(shown, *position, dotted(child), "duplicate key"))
                seen.add((key_node.tag, key_node.value))
                out[child] = position
            else:
                out.setdefault(child, position)
            _index_positions(value_node, child, out, shown, problems, ancestors, budget,
                             spelled, loader)
    else:
        for i, item in enumerate(node.value):
            _index_positions(item, (*path, i), out, shown, problems, ancestors, budget,
                             spelled, loader)
    ancestors.discard(id(node))
