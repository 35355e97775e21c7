"""Checks of VirtualMachine manifests past the schema, and their desired model. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from reconciler.core import cloudinit
from reconciler.core.errors import Problem, short
from reconciler.core.model.vm import (
    CloudInit,
    DesiredVM,
    Disk,
    Nic,
    PowerState,
    VMSpec,
    applied_record,
    simple_fields,
)
from reconciler.core.units import parse_duration, parse_quantity
from reconciler.core.validate.common import (
    ADOPT,
    NAME,
    OWN_ANNOTATIONS,
    SUSPEND,
    claim,
    positions,
    source,
    spec_hash,
)
from reconciler.core.validate.document import Document, FieldPath
from reconciler.core.validate.result import Checked

KIND = "VirtualMachine"
MiB = 1 << 20
MIN_MEMORY = 16 * MiB
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def check(doc: Document, data: dict[str, Any]) -> Checked:
    """A schema-valid VirtualMachine document (defaults filled in): its problems, or the desired
    VM with the positions the checks across documents name. Pure."""
    name_at = doc.position(NAME)
    semantic = tuple(semantics(doc, data))
    if semantic:
        return Checked(doc.file, semantic, claim(data), name_at)
    spec = data["spec"]
    paths: list[FieldPath] = [("spec", "cloudInit"), ("spec", "host"), ("spec", "hostSelector")]
    paths += [("spec", "disks", i, "name") for i in range(len(spec["disks"]))]
    paths += [("spec", "networks", i, "mac") for i in range(len(spec["networks"]))]
    return Checked(doc.file, (), claim(data), name_at, vm=desired(doc, data),
                   where=positions(doc, paths))


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _size(value: object) -> int | None:
    try:
        return parse_quantity(value)
    except ValueError:
        return None


def semantics(doc: Document, data: dict[str, Any]) -> Iterable[Problem]:
    """Checks across fields. Also run on a document with schema errors, so each check skips
    what is malformed (the schema has already said so). Pure."""
    yield from _check_annotations(doc, data)
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return
    yield from _check_sizes(doc, spec)
    yield from _check_text(doc, spec)
    yield from _check_disks(doc, spec)
    yield from _check_macs(doc, spec)
    if "host" in spec and "hostSelector" in spec:
        yield doc.problem(("spec", "hostSelector"),
                          "give spec.host (one host) or spec.hostSelector (labels that pick "
                          "one), not both")


def _check_sizes(doc: Document, spec: dict[str, Any]) -> Iterable[Problem]:
    vcpus, max_vcpus = _count(spec.get("vcpus")), _count(spec.get("maxVcpus", spec.get("vcpus")))
    memory = _size(spec.get("memory"))
    max_memory = _size(spec.get("maxMemory", spec.get("memory")))
    if vcpus is not None and max_vcpus is not None and vcpus > max_vcpus:
        yield doc.problem(("spec", "vcpus"), f"{vcpus} exceeds maxVcpus {max_vcpus}")
    if memory is not None and memory < MIN_MEMORY:
        yield doc.problem(("spec", "memory"), "must be at least 16MiB")
    for key, size in (("memory", memory), ("maxMemory", _size(spec.get("maxMemory")))):
        if size is not None and size >= MIN_MEMORY and size % MiB:
            yield doc.problem(("spec", key), _whole_mib(spec[key], size))
    if memory is not None and max_memory is not None and memory > max_memory:
        yield doc.problem(("spec", "memory"),
                          f"{spec['memory']} exceeds maxMemory {spec['maxMemory']}")


# Characters XML 1.0 cannot hold, and the carriage return, which libvirt's parser turns into a
# line feed (a description holding one would differ from the domain's forever).
_NOT_IN_XML = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff\ud800-\udfff]")


def _check_text(doc: Document, spec: dict[str, Any]) -> Iterable[Problem]:
    text = spec.get("description")
    if not isinstance(text, str):
        return
    found = _NOT_IN_XML.search(text)
    if found:
        char = found.group()
        name = "a carriage return" if char == "\r" else f"U+{ord(char):04X}"
        yield doc.problem(("spec", "description"),
                          f"{name} at character {found.start() + 1} cannot be kept in the "
                          "domain's XML (libvirt stores no carriage returns or control "
                          "characters); write line breaks as \\n and remove the others")


def _whole_mib(written: str, size: int) -> str:
    """libvirt's QEMU driver aligns guest memory up to whole MiB on x86
    (qemuDomainAlignMemorySizes): the running VM would never have the size written, and every
    plan would show it again."""
    up, down = -(-size // MiB), size // MiB
    return (f"{written} is not a whole number of MiB; libvirt rounds guest memory up to whole "
            f"MiB (the VM would run with {up}MiB): write {up}MiB or {down}MiB")


def _check_disks(doc: Document, spec: dict[str, Any]) -> Iterable[Problem]:
    disks = spec.get("disks")
    names: dict[str, int] = {}
    for i, disk in enumerate(disks if isinstance(disks, list) else []):
        if not isinstance(disk, dict):
            continue
        name = disk.get("name")
        if isinstance(name, str) and name in names:
            yield doc.problem(("spec", "disks", i, "name"),
                              f"disk {short(name)} is already declared as disks[{names[name]}]")
        if isinstance(name, str):
            names.setdefault(name, i)
        if name == cloudinit.SEED_DISK and isinstance(spec.get("cloudInit"), dict):
            yield doc.problem(("spec", "disks", i, "name"),
                              f"{name!r} is the cloud-init seed volume's name; rename the disk")
        if _size(disk.get("size")) == 0:
            yield doc.problem(("spec", "disks", i, "size"), "must be larger than 0")


def _check_macs(doc: Document, spec: dict[str, Any]) -> Iterable[Problem]:
    networks = spec.get("networks")
    macs: dict[str, int] = {}
    for i, nic in enumerate(networks if isinstance(networks, list) else []):
        mac = nic.get("mac") if isinstance(nic, dict) else None
        if not isinstance(mac, str) or not _MAC.match(mac.lower()):
            continue
        mac = mac.lower()
        if mac in macs:
            yield doc.problem(("spec", "networks", i, "mac"),
                              f"MAC {mac} is already used by networks[{macs[mac]}]")
        macs.setdefault(mac, i)
        if int(mac[:2], 16) & 1:
            yield doc.problem(("spec", "networks", i, "mac"),
                              "a multicast MAC cannot be used; the first byte must be even")


def _check_annotations(doc: Document, data: dict[str, Any]) -> Iterable[Problem]:
    """The tool's own annotations take "true" or "false" (a typo must not read as "false")."""
    metadata = data.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    for name in OWN_ANNOTATIONS:
        value = annotations.get(name) if isinstance(annotations, dict) else None
        if isinstance(value, str) and value not in ("true", "false"):
            yield doc.problem(("metadata", "annotations", name),
                              f'{short(value)} is not "true" or "false"')


def desired(doc: Document, data: dict[str, Any]) -> DesiredVM:
    """The desired VM of a document without problems. Pure."""
    spec = data["spec"]
    memory = parse_quantity(spec["memory"])
    vm = VMSpec(
        name=data["metadata"]["name"],
        vcpus=spec["vcpus"],
        max_vcpus=spec.get("maxVcpus", spec["vcpus"]),
        memory=memory,
        max_memory=parse_quantity(spec["maxMemory"]) if "maxMemory" in spec else memory,
        state=PowerState(spec["state"]),
        autostart=spec["autostart"],
        update_policy=spec["updatePolicy"],
        shutdown_timeout=parse_duration(spec["shutdownTimeout"]),
        protect=spec["protect"],
        disks=tuple(
            Disk(name=d["name"], size=parse_quantity(d["size"]), pool=d["pool"],
                 format=d["format"], image=d.get("image"), bus=d["bus"], reclaim=d["reclaim"])
            for d in spec["disks"]
        ),
        nics=tuple(
            Nic(network=n.get("network"), bridge=n.get("bridge"),
                mac=n["mac"].lower() if "mac" in n else None, model=n["model"])
            for n in spec["networks"]
        ),
        graphics=spec["graphics"],
        firmware=spec["firmware"],
        boot=tuple(spec["boot"]),
        labels=tuple(sorted(data["metadata"]["labels"].items())),
        cloud_init=_cloud_init(data["metadata"]["name"], spec),
        **{f.name: spec.get(f.metadata["manifest"], f.default) for f in simple_fields()},
    )
    applied = applied_record(vm)
    return DesiredVM(
        spec=vm,
        source=source(doc),
        spec_hash=spec_hash(applied),
        adopt=data["metadata"]["annotations"].get(ADOPT) == "true",
        suspend=data["metadata"]["annotations"].get(SUSPEND) == "true",
        host=spec.get("host"),
        host_selector=tuple(sorted(spec.get("hostSelector", {}).items())),
    )


def _cloud_init(name: str, spec: dict[str, Any]) -> CloudInit | None:
    if "cloudInit" not in spec:
        return None
    pool = spec["disks"][0]["pool"] if spec["disks"] else "default"
    return cloudinit.from_manifest(name, spec["cloudInit"], pool=pool)
