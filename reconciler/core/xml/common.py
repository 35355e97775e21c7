"""What every libvirt XML document of the tool shares: safe parsing, the tool's mark in
<metadata>, the live hold, libvirt's memory units. Pure (lxml)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from lxml import etree

from reconciler.core.model.common import (
    CREATE,
    DELETE,
    DISK,
    NIC,
    SEED,
    UNPLUG,
    WRITE,
    Mark,
    Pending,
)
from reconciler.core.model.vm import LiveHold

NS = "https://reconciler.dev/xmlns/domain/v1"


HOLD_NS = "https://reconciler.dev/xmlns/live-hold/v1"


MARK_KEY = "reconciler"


HOLD_KEY = "reconciler-hold"


_PARSER = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)


Element = etree._Element


def sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        element.text = text
    return element


def to_xml(element: etree._Element) -> str:
    """One element (a device) as XML text, for libvirt's device calls."""
    text: str = etree.tostring(element, encoding="unicode")
    return text


def mark_element(mark: Mark) -> etree._Element:
    root = etree.Element(f"{{{NS}}}vm", nsmap={MARK_KEY: NS})
    sub(root, f"{{{NS}}}instance", mark.instance)
    sub(root, f"{{{NS}}}manifest", mark.manifest)
    sub(root, f"{{{NS}}}spec-hash", mark.spec_hash)
    if mark.commit:
        commit = sub(root, f"{{{NS}}}commit", mark.commit)
        if mark.dirty:  # applied from files that differ from the commit
            commit.set("dirty", "true")
    sub(root, f"{{{NS}}}applied", json.dumps(mark.applied, sort_keys=True))
    for entry in mark.pending:
        attrs = {"op": entry.op, "part": entry.part, "key": entry.key, "pool": entry.pool}
        sub(root, f"{{{NS}}}pending", **{k: v for k, v in attrs.items() if v})
    return root


# Many hosts: the moves a domain went through, in its own metadata element (apart from the
# mark, which every apply rewrites), carried along by a migration or a cold move.
MOVES_NS = "https://reconciler.dev/xmlns/moves/v1"
MOVES_KEY = "reconciler-moves"


def add_move(domain_xml: str, source: str, destination: str, how: str, at: str,
             volumes: Iterable[tuple[str, str]] = ()) -> str:
    """``domain_xml`` with one more move in its history: from ``source`` to ``destination``,
    ``how`` ("live" or "cold"), ``at`` (UTC, ISO 8601), and the (pool, volume) it took. The
    last 20 are kept. Pure."""
    root = etree.fromstring(domain_xml.encode())
    metadata = root.find("metadata")
    if metadata is None:
        metadata = sub(root, "metadata")
    moves = metadata.find(f"{{{MOVES_NS}}}moves")
    if moves is None:
        moves = etree.SubElement(metadata, f"{{{MOVES_NS}}}moves", nsmap={MOVES_KEY: MOVES_NS})
    move = sub(moves, f"{{{MOVES_NS}}}move", **{"from": source, "to": destination, "how": how,
                                                "at": at})
    for pool, name in volumes:
        sub(move, f"{{{MOVES_NS}}}volume", pool=pool, name=name)
    for old in moves.findall(f"{{{MOVES_NS}}}move")[:-20]:
        moves.remove(old)
    return to_xml(root)


def last_move(root: etree._Element,
              ) -> tuple[str, str, str, tuple[tuple[str, str], ...]] | None:
    """(from, to, at, the (pool, volume) it took) of the last move in a domain's history (see
    ``add_move``), or None. Pure."""
    moves = root.findall(f"metadata/{{{MOVES_NS}}}moves/{{{MOVES_NS}}}move")
    if not moves:
        return None
    last = moves[-1]
    taken = tuple((v.get("pool", ""), v.get("name", ""))
                  for v in last.iterfind(f"{{{MOVES_NS}}}volume"))
    return last.get("from", ""), last.get("to", ""), last.get("at", ""), taken


def mark_xml(mark: Mark) -> str:
    return to_xml(mark_element(mark))


def hold_xml(hold: LiveHold) -> str:
    attrs = {"reason": hold.reason}
    if hold.vcpus is not None:
        attrs["vcpus"] = str(hold.vcpus)
    if hold.memory is not None:
        attrs["memory"] = str(hold.memory)
    if hold.seen_vcpus is not None:
        attrs["seen-vcpus"] = str(hold.seen_vcpus)
    if hold.seen_memory is not None:
        attrs["seen-memory"] = str(hold.seen_memory)
    if hold.vcpus_reason:
        attrs["vcpus-reason"] = hold.vcpus_reason
    if hold.memory_reason:
        attrs["memory-reason"] = hold.memory_reason
    return to_xml(etree.Element(f"{{{HOLD_NS}}}hold", attrs, nsmap={HOLD_KEY: HOLD_NS}))


# libvirt's memory units: binary (k, KiB, M, MiB, ...) and decimal (KB, MB, ...).
_UNITS = {
    "b": 1, "bytes": 1, "k": 1024,
    **{unit: 1024**power for power, letter in enumerate("KMGTPE", 1)
       for unit in (letter, f"{letter}iB")},
    **{f"{letter}B": 1000**power for power, letter in enumerate("KMGTPE", 1)},
}


def memory_bytes(element: etree._Element | None) -> int:
    """Bytes of a libvirt memory element (its unit defaults to KiB)."""
    if element is None or not element.text:
        return 0
    unit: str = element.get("unit", "KiB")
    size: int = int(element.text) * _UNITS.get(unit, 1024)
    return size


def read_mark(root: etree._Element) -> Mark | None:
    element = root.find(f"metadata/{{{NS}}}vm")
    if element is None:
        return None
    try:
        applied = json.loads(element.findtext(f"{{{NS}}}applied") or "")
    except ValueError:
        applied = None
    corrupt = not isinstance(applied, dict) or not _plausible(applied)
    return Mark(
        manifest=element.findtext(f"{{{NS}}}manifest") or "",
        spec_hash=element.findtext(f"{{{NS}}}spec-hash") or "",
        commit=element.findtext(f"{{{NS}}}commit"),
        applied=applied if isinstance(applied, dict) and not corrupt else {},
        # No instance: not provably ours. It then looks like another instance's domain.
        instance=element.findtext(f"{{{NS}}}instance") or "",
        corrupt=corrupt,
        pending=tuple(_pending(element)),
        dirty=element.find(f"{{{NS}}}commit[@dirty='true']") is not None,
    )


_PENDING_PARTS = {CREATE: (DISK,), WRITE: (SEED,), DELETE: (DISK, SEED), UNPLUG: (DISK, NIC)}


def _pending(element: etree._Element) -> list[Pending]:
    """The mark's record of unfinished work; an entry the tool would not have written (edited
    by hand) is left out."""
    out = []
    for entry in element.iterfind(f"{{{NS}}}pending"):
        op, part = entry.get("op", ""), entry.get("part", "")
        key, pool = entry.get("key", ""), entry.get("pool", "")
        if part not in _PENDING_PARTS.get(op, ()) or (part == DISK and not key):
            continue
        if op != UNPLUG and not pool:
            continue
        out.append(Pending(op, part, key, pool))
    return out


def _plausible(applied: dict[str, Any]) -> bool:
    """The applied record has the types the tool wrote (it may have been edited by hand)."""
    checks = (("protect", bool), ("shutdownTimeout", int), ("updatePolicy", str),
              ("disks", list), ("networks", list))
    return all(isinstance(applied.get(key), kind) for key, kind in checks if key in applied) and (
        all(isinstance(d, dict) for d in applied.get("disks", [])))


def read_hold(root: etree._Element) -> LiveHold | None:
    element = root.find(f"metadata/{{{HOLD_NS}}}hold")
    if element is None:
        return None
    def number(key: str) -> int | None:
        value = element.get(key)
        return int(value) if value else None

    return LiveHold(vcpus=number("vcpus"), memory=number("memory"),
                    reason=element.get("reason", ""), seen_vcpus=number("seen-vcpus"),
                    seen_memory=number("seen-memory"),
                    vcpus_reason=element.get("vcpus-reason", ""),
                    memory_reason=element.get("memory-reason", ""))


def parse(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode(), _PARSER)


def set_mark(root: etree._Element, mark: Mark) -> None:
    """Put the tool's element into <metadata>, replacing an old one in place (so an unchanged
    spec leaves the XML as it was)."""
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.Element("metadata")
        root.find("name").addnext(metadata)
    marks = metadata.findall(f"{{{NS}}}vm")
    for old in marks[1:]:
        metadata.remove(old)
    if marks:
        metadata.replace(marks[0], mark_element(mark))
    else:
        metadata.append(mark_element(mark))

