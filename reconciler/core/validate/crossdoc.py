"""Checks across documents: one name declared twice, one MAC on two VMs, two VMs whose volumes
would get one name, two networks on one bridge. Pure; no YAML or JSON Schema needed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reconciler.core.cloudinit import seed_volume
from reconciler.core.errors import Problem, short
from reconciler.core.validate.result import Checked, ClaimKey, Validated

Clash = tuple[Problem, tuple[str, ...]]  # a problem, and the VMs it stops from being applied


def combine(checked: Iterable[Checked], load_problems: Iterable[Problem] = ()) -> Validated:
    """The documents' own results, and the problems between them. A name declared twice is
    applied from neither document; VMs that share a MAC or a volume name are not applied.

    The result does not depend on the order of the files: the documents are taken by file
    (shown path), each file's in their order."""
    checked = sorted(checked, key=lambda doc: doc.file)
    problems = list(load_problems)
    claimed: dict[ClaimKey, Checked] = {}
    twice: set[ClaimKey] = set()
    for doc in checked:
        problems.extend(doc.problems)
        if doc.claim is not None:
            problems.extend(_claim(claimed, twice, doc.claim, doc))
    built = [doc for doc in checked if doc.vm is not None]
    networks = [doc for doc in checked if doc.network is not None]
    hosts = [doc for doc in checked
             if doc.host is not None and ("Host", doc.host.spec.name) not in twice]
    uris = list(_shared_uris(hosts))
    problems.extend(problem for problem, _ in uris)
    same_uri = {name for _, names in uris for name in names}
    hosts = [doc for doc in hosts if doc.host and doc.host.spec.name not in same_uri]
    hosts_declared = any(doc.claim is not None and doc.claim[0] == "Host" for doc in checked)
    clashes = [*_shared_macs(built), *_shared_volumes(built),
               *_placement(built, hosts, hosts_declared)]
    bridges = list(_shared_bridges(networks))
    problems.extend(problem for problem, _ in [*clashes, *bridges])
    dropped = {name for kind, name in twice if kind == "VirtualMachine"}
    dropped |= {name for _, names in clashes for name in names}
    dropped_networks = {name for kind, name in twice if kind == "Network"}
    dropped_networks |= {name for _, names in bridges for name in names}
    return Validated(
        vms=tuple(doc.vm for doc in built if doc.vm and doc.vm.spec.name not in dropped),
        problems=tuple(sorted(set(problems))),
        networks=tuple(doc.network for doc in networks
                       if doc.network and doc.network.spec.name not in dropped_networks),
        pools=tuple(doc.pool for doc in checked
                    if doc.pool and ("StoragePool", doc.pool.spec.name) not in twice),
        hosts=tuple(doc.host for doc in hosts if doc.host),
    )


def _claim(claimed: dict[ClaimKey, Checked], twice: set[ClaimKey], key: ClaimKey,
           doc: Checked) -> list[Problem]:
    first = claimed.setdefault(key, doc)
    if first is doc:
        return []
    twice.add(key)
    message = (f"{short(key[1])} is already declared in {first.file}:{first.name_at[0]}; names "
               "must be unique, and neither is applied until one is renamed")
    return [doc.problem("metadata.name", message)]


def _shared_macs(built: Sequence[Checked]) -> Iterable[Clash]:
    """One MAC on two VMs breaks both on a shared segment; neither is applied."""
    owners: dict[str, Checked] = {}
    for doc in built:
        assert doc.vm is not None
        for i, nic in enumerate(doc.vm.spec.nics):
            if nic.mac is None:
                continue
            first = owners.setdefault(nic.mac, doc)
            if first is doc:
                continue
            assert first.vm is not None
            yield (doc.problem(f"spec.networks[{i}].mac",
                               f"MAC {nic.mac} is also used by VM {first.vm.spec.name!r} "
                               f"({first.file}:{first.name_at[0]}); give each NIC its own MAC"),
                   (doc.vm.spec.name, first.vm.spec.name))


def _shared_volumes(built: Sequence[Checked]) -> Iterable[Clash]:
    """Volumes are named ``<vm>-<disk>`` (and ``<vm>-cidata`` for a seed), so VM ``a-b`` with
    disk ``c`` and VM ``a`` with disk ``b-c`` would share one volume; neither is applied."""
    owners: dict[tuple[str, str], tuple[Checked, str]] = {}
    for doc in built:
        assert doc.vm is not None
        spec = doc.vm.spec
        volumes = [(d.pool, d.volume(spec.name), f"spec.disks[{i}].name")
                   for i, d in enumerate(spec.disks)]
        if spec.cloud_init is not None:
            volumes.append((spec.cloud_init.pool, seed_volume(spec.name), "spec.cloudInit"))
        for pool, volume, where in volumes:
            first, first_field = owners.setdefault((pool, volume), (doc, where))
            if first is doc:
                continue
            assert first.vm is not None
            what = "cloud-init seed" if first_field == "spec.cloudInit" else "disk"
            yield (doc.problem(where, f"volume {volume!r} in pool {pool!r} is also the {what} "
                                      f"volume of VM {first.vm.spec.name!r} "
                                      f"({first.file}:{first.name_at[0]}); rename the disk or "
                                      "the VM"),
                   (spec.name, first.vm.spec.name))


def _shared_bridges(networks: Sequence[Checked]) -> Iterable[Clash]:
    """Two networks on one bridge: neither is applied."""
    seen: dict[str, Checked] = {}
    for doc in networks:
        assert doc.network is not None
        bridge = doc.network.spec.bridge
        if not bridge:
            continue
        first = seen.setdefault(bridge, doc)
        if first is not doc:
            assert first.network is not None
            yield (doc.problem("spec.bridge", f"bridge {bridge!r} is already used by network "
                                              f"{first.network.spec.name!r} ({first.file})"),
                   (doc.network.spec.name, first.network.spec.name))


def _shared_uris(hosts: Sequence[Checked]) -> Iterable[Clash]:
    """Two Hosts with one URI: a host would look for a VM "on the other" by reading itself
    (a pasted URI); neither is applied."""
    seen: dict[str, Checked] = {}
    for doc in hosts:
        assert doc.host is not None
        uri = doc.host.spec.uri
        first = seen.setdefault(uri, doc)
        if first is not doc:
            assert first.host is not None
            yield (doc.problem("spec.uri", f"{short(uri)} is already the URI of Host "
                                           f"{first.host.spec.name!r} ({first.file}); each "
                                           "host has its own"),
                   (doc.host.spec.name, first.host.spec.name))


def _placement(built: Sequence[Checked], hosts: Sequence[Checked],
               declared: bool) -> Iterable[Clash]:
    """Fleet-wide: with Host manifests, each VM names an existing host (``spec.host``) or a
    selector that matches at least one (``spec.hostSelector``); without any, a VM names none.
    A VM placed nowhere is not applied (no host could tell it is its own). ``declared``: a
    Host manifest exists, also one with problems (its VMs then wait for it, as "not declared"
    would send them nowhere)."""
    by_name = {doc.host.spec.name: doc.host.spec for doc in hosts if doc.host}
    known = ", ".join(sorted(by_name)) or "none valid"
    for doc in built:
        assert doc.vm is not None
        vm = doc.vm
        name = vm.spec.name
        if not declared:
            if vm.host is not None or vm.host_selector:
                where = "spec.host" if vm.host is not None else "spec.hostSelector"
                yield (doc.problem(where, "the repository declares no Host manifest; declare "
                                          "the hosts (kind: Host) or remove this field"), (name,))
        elif vm.host is not None:
            if vm.host not in by_name:
                yield (doc.problem("spec.host", f"no Host named {short(vm.host)} is declared "
                                                f"(hosts: {known})"), (name,))
        elif vm.host_selector:
            if not any(host.matches(vm.host_selector) for host in by_name.values()):
                wanted = ",".join(f"{k}={v}" for k, v in vm.host_selector)
                yield (doc.problem("spec.hostSelector",
                                   f"no Host has the labels {short(wanted)} (hosts: {known})"),
                       (name,))
        else:
            yield (doc.problem("metadata.name",
                               "the repository declares Host manifests: give this VM "
                               "spec.host or spec.hostSelector, so that exactly one host "
                               "runs it"), (name,))
