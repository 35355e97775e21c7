"""Plan and apply share this pipeline: manifests -> desired, libvirt -> live, then the diff."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from reconciler.adapters import assemble, cache
from reconciler.adapters.cache import Cache
from reconciler.adapters.manifests import load_keyed
from reconciler.core import defaults, observe, scope
from reconciler.core.diff.guards import Guards
from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.core.live import LiveState, infra_text, owned_view
from reconciler.core.model.storage import StorageView
from reconciler.core.model.vm import DesiredVM, LiveVM
from reconciler.core.plan import Action, Plan, Resource, Why, fingerprint
from reconciler.core.record import Record
from reconciler.core.validate.result import Validated

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from reconciler.adapters.libvirt import Libvirt
    from reconciler.core.fleet import Placement, Share
    from reconciler.core.model.host import Destination
    from reconciler.core.model.vm import VolumeInfo
    from reconciler.core.observe import Observation, RawNetwork, RawPool, RawVolume, VolumeKey
    from reconciler.core.result import Result
    from reconciler.core.targeting import Targeting


class Host(Protocol):
    """What a plan reads of a host: a libvirt connection (``adapters.libvirt.Libvirt``) or a
    snapshot of one (``adapters.snapshot.SnapshotHost``, for plans in CI with no libvirt)."""

    uri: str

    def read_observed(self, expected: Mapping[VolumeKey, int] | None = None,
                      memo: Cache | None = None) -> Observation: ...

    def read_raw_pools(self) -> tuple[RawPool, ...]: ...

    def read_raw_networks(self) -> tuple[RawNetwork, ...]: ...

    def read_volumes(self, pool: str) -> tuple[VolumeInfo, ...]: ...

    def read_raw_volumes(self, pool: str) -> tuple[RawVolume, ...]: ...

    def free_memory(self) -> int | None: ...

    def host_interfaces(self) -> tuple[str, ...] | None: ...

    def max_vcpus(self) -> int | None: ...

    def host_routes(self) -> tuple[tuple[str, str], ...]: ...

    def real_paths(self, paths: Iterable[str]) -> dict[str, str] | None: ...

    def close(self) -> object: ...

    def hostname(self) -> str: ...

    def host_uuid(self) -> str | None: ...

    # When the host was read, for a snapshot (UTC, ISO 8601); None: read live, now.
    taken: str | None

# The planner, the resolver and the verifier are imported when a plan is computed, and the
# fleet's modules (placement, moves) only when Host manifests are declared, and targeting only
# for a targeted run: a cached plan with nothing to do on one host (the steady state) does not
# load them (part of its start-up time, see bench/startup_bench.py).


def draft(inputs: Validated, live: LiveState, guards: Guards, instance: str,
          targeting: Targeting | None = None) -> Plan:
    """``core.planner.draft``."""
    from reconciler.core import planner

    return planner.draft(inputs, live, guards, instance, targeting)


def compute(inputs: Validated, live: LiveState, guards: Guards, instance: str,
            targeting: Targeting | None = None) -> Plan:
    """``core.planner.compute``."""
    from reconciler.core import planner

    return planner.compute(inputs, live, guards, instance, targeting)


def expected_sizes(desired: Validated) -> dict[VolumeKey, int]:
    """(pool, volume) -> the size the manifests give it, of every VM's disks."""
    return {(disk.pool, disk.volume(vm.spec.name)): disk.size
            for vm in desired.vms for disk in vm.spec.disks}


def read_state(hv: Host, instance: str, desired: Validated | None = None,
               memo: Cache | None = None, *,
               expected: Mapping[VolumeKey, int] | None = None) -> LiveState:
    """Everything the diff needs, read before diffing. With ``desired``, a stopped VM's volume
    whose last applied size is the manifest's is not asked for its size (see
    ``Libvirt.read_live``); without it (the daemon) every size is read. ``expected``:
    ``expected_sizes(desired)``, when computed once for many hosts."""
    if desired is not None and expected is None:
        expected = expected_sizes(desired)
    seen = hv.read_observed(None if desired is None else expected, memo)
    pools = hv.read_raw_pools()
    storage = StorageView({p.name: frozenset(p.volumes) for p in pools if p.active},
                          seen.users, seen.file_users,
                          available={p.name: p.available for p in pools if p.active})
    return LiveState(owned_view(seen.vms, instance),
                     assemble.live_networks(hv.read_raw_networks(), memo),
                     assemble.live_pools(pools, memo), seen.read, storage)


def _with_host(hv: Host, live: LiveState) -> LiveState:
    """``live`` with the host's facts that only changes need: its available memory, its
    interfaces, its IPv4 routes (on this machine's libvirt only; the test driver's host is not
    this machine) and its vCPU limit (a plan with nothing to do does not read them)."""
    return replace(live, free_memory=hv.free_memory(), host_interfaces=hv.host_interfaces(),
                   max_vcpus=hv.max_vcpus(), host_routes=hv.host_routes())


def _with_details(hv: Host, live: LiveState, pools: frozenset[str]) -> LiveState:
    """``live`` with every volume of ``pools`` read in detail (see ``core.resolve.needs``)."""
    if live.storage is None or not pools:
        return live
    details = {pool: hv.read_volumes(pool) for pool in sorted(pools)}
    return replace(live, storage=replace(live.storage, details=details))


@dataclass(frozen=True, eq=False, repr=False)
class Source(Record):
    """What a plan is made from besides the host: the manifests and the run's guards."""

    path: Path  # the manifest directory (or one file: then nothing is destroyed)
    instance: str = defaults.INSTANCE
    storage_roots: tuple[str, ...] = defaults.STORAGE_ROOTS
    max_destroy: int = defaults.MAX_DESTROY
    allow_empty: bool = False
    prune: str = "auto"  # auto | confirm | off (``core.diff.guards.pruning``)
    # Where `reconciler approve` records approved destroys (read afresh by every plan).
    state_dir: Path | None = None
    # Many hosts: this host's name among the Host manifests (None: the connection's hostname).
    host: str | None = None
    # `plan`/`apply --target`, `-l`: a run limited to some VMs (never the daemon's); None:
    # the whole repository.
    target: Targeting | None = None
    max_moves: int = defaults.MAX_MOVES  # many hosts: moves one run starts (config maxMoves)


@dataclass(frozen=True, eq=False, repr=False)
class Fleetwide(Record):
    """What every host's plan of a fleet plan derives alike from the validated manifests,
    computed once (``fleetwide``) and shared by them: the placement, and the disks' sizes."""

    placement: Placement
    sizes: Mapping[VolumeKey, int]


def fleetwide(inputs: Validated) -> Fleetwide:
    """``Fleetwide`` of ``inputs`` (the manifests every host of the fleet is planned from)."""
    from reconciler.core.fleet import placement

    return Fleetwide(placement(inputs), expected_sizes(inputs))


@dataclass(frozen=True, eq=False, repr=False)
class Planned(Record):
    plan: Plan
    inputs: Validated  # the manifests, validated
    live: LiveState  # what the plan was computed from
    # Many hosts: the Hosts declared (name -> URI), and the Hosts no longer declared that
    # answered and run no VM of the instance (forgotten: see ``adapters.knownhosts``).
    hosts: dict[str, str] = field(default_factory=dict)
    forget: tuple[str, ...] = ()


# Many hosts: (libvirt URI of another host, VM names) -> those of them that run there, managed
# by this instance (``adapters.libvirt.peers.managed_here``); raises ReconcilerError when the
# host cannot be read.
# (the host's libvirt UUID, or None when it cannot say; the VMs found)
Peers = Callable[[str, Sequence[str] | None], tuple[str | None, frozenset[str]]]
# Many hosts: (host name, its URI, the VMs that move there) -> what the moves need to know of
# it (``adapters.libvirt.peers.destination``); never raises.
# ``left``: VMs gone from this host whose volumes are still here: the host they moved to says
# whether it holds them, moved from here (``Destination.moved``).
Destinations = Callable[[str, str, tuple[LiveVM, ...], tuple[str, ...]], "Destination"]


def make_plan(source: Source, hv: Host, *, memo: Cache | None = None,
              every_size: bool = False, peers: Peers | None = None,
              loaded: Validated | None = None, check_target: bool = True,
              destinations: Destinations | None = None,
              shared: Fleetwide | None = None) -> Planned:
    """The one assembly of a plan, for `plan`, `apply`, `apply --plan` and each reconcile of
    the daemon: the manifests, the observation of the host, the guards, then the diff.

    ``memo``: a cache of parsed manifests, domains, networks and pools, and of a plan with
    nothing to do, keyed by a digest of all its inputs (see ``reconciler.adapters.cache``);
    saved here, also when the host cannot be read. ``every_size``: read every volume's size,
    also those whose last applied size is the manifest's (the daemon's resync: drift in sizes
    is seen). ``peers``: many hosts: how to look for a VM this host would create on the
    fleet's other hosts (None: not looked for, as in a plan from a snapshot). ``loaded``: the
    manifests, already validated (the fleet plan reads them once for every host); ``shared``:
    what is derived from them alike for every host (``fleetwide(loaded)``), computed once.
    ``check_target``: refuse a ``source.target`` that matches nothing (off when verifying an
    apply, whose targeted orphans are gone). ``destinations``: many hosts: how to read the
    host a VM leaving this one moves to (None: the VM is shown leaving, not moved).

    Raises ``ReconcilerError`` when libvirt cannot be read, and ``PermanentError`` when
    ``source.target`` matches nothing (see ``core.targeting.Targeting.misses``)."""
    try:
        inputs, digest = ((loaded, b"") if loaded is not None
                          else load_keyed(source.path, source.storage_roots, memo))
        live = read_state(hv, source.instance, None if every_size else inputs, memo,
                          expected=shared.sizes if shared is not None else None)
        target = source.target if source.target is not None and source.target.active else None
        misses = target.misses(inputs, live, source.instance) if target and check_target else []
        if misses:
            raise PermanentError("; ".join(misses))
        fleet = _share(source, hv, inputs, live, shared.placement if shared else None)
    except BaseException:
        if memo is not None:
            memo.save()  # keeps what this run used (the parsed manifests), and no more
        raise
    every_vm = inputs.vms  # of the whole repository (many hosts: the others' too)
    if fleet is not None:
        inputs = fleet.inputs
    approved: frozenset[tuple[str, str]] = frozenset()
    if source.state_dir is not None and source.prune == "confirm":
        from reconciler.adapters import approvals

        approved = approvals.read(source.state_dir, source.instance)
    guards = Guards(problems=len(inputs.problems), max_destroy=source.max_destroy,
                    prune=source.prune, approved=approved,
                    allow_empty=source.allow_empty, single_file=source.path.is_file(),
                    storage_roots=source.storage_roots,
                    elsewhere=fleet.elsewhere if fleet is not None else ())
    paths = [*source.storage_roots, *(p.spec.path for p in inputs.pools),
             *(p.config.path for p in live.pools if p.config.path)]
    real_paths = hv.real_paths(paths)
    if real_paths is not None:  # the host's file system is seen: symbolic links resolved
        live = replace(live, real_paths=real_paths)
        if live.storage is not None:  # a disk named through a link uses the file it leads to
            real = hv.real_paths(live.storage.file_users) or {}
            by_real: dict[str, tuple[str, ...]] = {}
            for path, names in live.storage.file_users.items():
                resolved = real.get(path, path)
                by_real[resolved] = (*by_real.get(resolved, ()), *names)
            live = replace(live, storage=replace(live.storage, file_users=by_real))
    key = (cache.digest(digest, fingerprint(live.vms, live.read).encode(),
                        infra_text(live).encode(), repr(guards).encode(),
                        source.instance.encode(), repr(target).encode(),
                        repr(fleet.host if fleet is not None else None).encode())
           if memo and digest else None)
    found = memo.get("plan", key) if memo and key else None
    if isinstance(found, Plan):
        # Its key covers every domain, network and pool, not the volumes: what this plan read
        # about its own objects is observed afresh.
        chosen = target.choose(inputs, live, source.instance) if target else None
        seen = scope.observed(inputs, live, source.instance, chosen)
        plan = replace(found, fingerprint=scope.fingerprint(seen, found.partial),
                       observed=seen)
    else:
        plan = draft(inputs, live, guards, source.instance, target)
        if plan.actions:  # changes are decided on the host's facts and the volumes' details
            from reconciler.core.resolve import needs

            live = _with_details(hv, _with_host(hv, live), needs(plan))
            plan = compute(inputs, live, guards, source.instance, target)
    forget: tuple[str, ...] = ()
    if fleet is not None:
        plan, forget = _fleet(plan, source, fleet, hv, peers, destinations, every_vm, live)
    if memo and key and found is None and not plan.actions:  # the steady state: nothing to do
        memo.put("plan", key, plan)
    if memo is not None:
        memo.save()
    return Planned(plan, inputs, live, {h.spec.name: h.spec.uri for h in inputs.hosts}, forget)


def _share(source: Source, hv: Host, inputs: Validated, live: LiveState,
           placed: Placement | None = None) -> Share | None:
    """This host's share of the manifests; None without Host manifests (this host reconciles
    all of them). ``placed``: their placement, computed once for a fleet (None: computed here).

    Raises ``core.fleet.NotInFleet`` when Hosts are declared and this host is none of them."""
    if not inputs.hosts:
        return None
    from reconciler.core.fleet import share

    me = source.host or hv.hostname()
    return share(inputs, me, live_networks=[n.name for n in live.networks],
                 live_pools=[p.name for p in live.pools], placed=placed)


def _fleet(plan: Plan, source: Source, fleet: Share, hv: Host, peers: Peers | None,
           destinations: Destinations | None, every_vm: tuple[DesiredVM, ...],
           live: LiveState) -> tuple[Plan, tuple[str, ...]]:
    """Many hosts: ``plan`` of this host's share, with the VMs no host may run listed, the
    creates of VMs found on another host blocked (with ``peers``), the VMs leaving for
    another host moved and the moves that stopped once their VM was there finished (with
    ``destinations``), and all of it held while a manifest has a problem (``core.fleet``);
    and the Hosts no longer declared to forget. ``every_vm``: the repository's VMs."""
    from reconciler.core.fleet import held, nowhere

    assert fleet.host is not None
    plan = nowhere(plan, fleet)
    forget: tuple[str, ...] = ()
    if peers is not None:
        from reconciler.adapters import knownhosts

        known = (knownhosts.read(source.state_dir, source.instance)
                 if source.state_dir is not None else {})
        declared = {h.spec.name for h in fleet.inputs.hosts}
        uris = {h.spec.uri for h in fleet.inputs.hosts}
        gone = {name: uri for name, uri in known.items()  # a renamed Host is not gone
                if name not in declared and name != fleet.host and uri not in uris}
        plan, forget = _arrivals(plan, fleet, peers, gone, hv.host_uuid)
    if destinations is not None:
        plan = _moves(plan, fleet, destinations, hv.host_uuid, source.max_moves)
        plan = _leftovers(plan, fleet, destinations, every_vm, live, hv, source)
    return held(plan, len(fleet.inputs.problems)), forget


def _arrivals(plan: Plan, fleet: Share, peers: Peers, gone: dict[str, str],
              here: Callable[[], str | None]) -> tuple[Plan, tuple[str, ...]]:
    """``plan`` with the creates of VMs that run on another host blocked (they move here), and
    all creates blocked while another host cannot be read (``core.fleet.arrivals``); and the
    Hosts no longer declared (``gone``: name -> URI, remembered) that answered and run no VM
    of this instance, to forget. A VM found on such a Host is stranded there: never made a
    second time here. ``here``: this host's libvirt UUID (asked only when a host answers
    with one): a Host whose URI reaches it is a
    mistake in the Host manifests or the config's ``host`` (it would hide the real host's
    VMs), and counts as a host that cannot be read."""
    from reconciler.core.fleet import arrivals, creating

    names = creating(plan)
    others = sorted((h.spec.name, h.spec.uri) for h in fleet.inputs.hosts
                    if h.spec.name != fleet.host) if names else []
    asked = [*[(host, uri, tuple(names)) for host, uri in others],
             *[(host, uri, None) for host, uri in sorted(gone.items())]]
    if not asked:
        return plan, ()
    from concurrent.futures import ThreadPoolExecutor

    def read(entry: tuple[str, str, tuple[str, ...] | None]) -> frozenset[str] | ReconcilerError:
        try:
            uuid, found = peers(entry[1], entry[2])
        except ReconcilerError as exc:
            return exc
        if uuid is not None and uuid == here():
            return ReconcilerError(
                f"its URI {entry[1]} reaches this very host (libvirt host UUID {uuid}); fix "
                f"Host {entry[0]}'s uri, or this host's `host` in the config")
        return found

    with ThreadPoolExecutor(max_workers=min(16, len(asked))) as pool:  # each bounded in time
        answers = list(pool.map(read, asked))
    found: dict[str, str] = {}
    unread: dict[str, str] = {}
    stranded: dict[str, str] = {}
    forget = []
    for (host, _, wanted), answer in zip(asked, answers, strict=True):
        if isinstance(answer, ReconcilerError):
            unread[host] = str(answer)
        elif wanted is None:  # a Host no longer declared: every VM of ours there
            if not answer:
                forget.append(host)
            for name in sorted(answer & set(names)):
                stranded.setdefault(name, host)
        else:
            for name in sorted(answer):
                found.setdefault(name, host)
    return arrivals(plan, found, unread, stranded), tuple(forget)


def _moves(plan: Plan, fleet: Share, destinations: Destinations,
           here: Callable[[], str | None], max_moves: int) -> Plan:
    """``plan`` with each VM leaving for another host moved there, or blocked saying why
    (``core.moves``): each destination read once, at once."""
    from reconciler.core.moves import plan_moves

    going: dict[str, list[LiveVM]] = {}
    for action in plan.actions:
        reason = action.reason
        if reason is not None and reason.why == Why.LEAVING and isinstance(action.live, LiveVM):
            going.setdefault(reason.names[0], []).append(action.live)
    if not going:
        return plan
    uris = {h.spec.name: h.spec.uri for h in fleet.inputs.hosts}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(16, len(going))) as pool:
        read = {host: pool.submit(destinations, host, uris[host], tuple(vms), ())
                for host, vms in going.items()}
    assert fleet.host is not None
    return plan_moves(plan, fleet.host, {host: f.result() for host, f in read.items()},
                      fleet.suspended, uuid=here(), limit=max_moves)


def _leftovers(plan: Plan, fleet: Share, destinations: Destinations,
               every_vm: tuple[DesiredVM, ...], live: LiveState, hv: Host,
               source: Source) -> Plan:
    """``plan`` with the end of each move from here that stopped once its VM was on the host
    it moved to, before its volumes here were deleted (``core.moves.leftover``). A candidate:
    a VM the repository places on another host (not suspended, chosen by a targeted run), with
    no domain of its name here, and volumes here named like its volumes that nothing here
    uses: no domain by pool and name, nor by path (links resolved), no volume of any active
    pool as its backing file. The host it is placed on is read only when there are such
    volumes. Kept, saying so, while a domain here uses a disk file outside every pool (its
    backing chain, which a stopped domain's definition does not show, might be one of them)."""
    storage = live.storage
    if storage is None or fleet.host is None:
        return plan
    from reconciler.core.moves import kept, leftover, spec_volumes

    target = source.target if source.target is not None and source.target.active else None
    by_name = {vm.spec.name: vm for vm in every_vm}
    present = {vm.name for vm in live.vms} | {a.name for a in plan.actions
                                               if a.resource == Resource.VM}
    found: dict[str, list[tuple[DesiredVM, tuple[tuple[str, str, str], ...]]]] = {}
    for name, host, _ in fleet.elsewhere:
        vm = by_name.get(name)
        if (not host or vm is None or name in present or name in fleet.suspended
                or (target is not None and not target.chooses(name, dict(vm.spec.labels)))):
            continue
        left = tuple((pool, volume, key) for pool, volume, _, _, key in spec_volumes(name, vm.spec)
                     if storage.exists((pool, volume)) and not storage.users.get((pool, volume)))
        if left:
            found.setdefault(host, []).append((vm, left))
    if not found:
        return plan
    files = {(raw.pool, raw.name): observe.volume_file(raw)
             for pool in sorted(storage.pool_volumes) for raw in hv.read_raw_volumes(pool)}
    paths = [f.path for f in files.values() if f.path]
    backing = [f.backing for f in files.values() if f.backing]
    real = hv.real_paths([*paths, *backing, *storage.file_users]) or {}
    pooled = {real.get(path, path) for path in paths}
    used = {real.get(path, path) for path in storage.file_users}
    outside = sorted(used - pooled)  # disk files of domains here that no pool holds
    # in use: by a domain here by its path, or as another volume's backing file
    taken = used | {real.get(path, path) for path in backing}
    uris = {h.spec.name: h.spec.uri for h in fleet.inputs.hosts}
    actions: list[Action | None] = []
    now = time.time()
    for host, entries in sorted(found.items()):
        unused = []
        for vm, left in entries:
            read = [(entry, files.get(entry[:2])) for entry in left]
            unused.append((vm, tuple(
                (*entry, file.changed) for entry, file in read if file is not None
                and real.get(file.path or "", file.path) not in taken)))
        unused = [(vm, left) for vm, left in unused if left]
        if outside:
            why = (f"a domain here uses {outside[0]}, a disk file in no storage pool, whose "
                   "backing chain libvirt does not show")
            actions += [kept(vm, host, left, why) for vm, left in unused]
            continue
        if not unused:
            continue
        dest = destinations(host, uris[host], (), tuple(vm.spec.name for vm, _ in unused))
        actions += [leftover(vm, fleet.host, source.instance, dest, left, now)
                    for vm, left in unused]
    return replace(plan, actions=(*plan.actions, *(a for a in actions if a is not None)))


def verify(source: Source, hv: Libvirt, planned: Planned, results: tuple[Result, ...], *,
           memo: Cache | None = None) -> tuple[Planned, tuple[Result, ...]]:
    """The results of carrying out ``planned``, as a fresh read of the host shows them (see
    ``reconciler.core.verify``), and the plan made from that read. When no action wrote
    anything, nothing is read again.

    Raises ``ReconcilerError`` when libvirt cannot be read."""
    if not any(r.ok and a.writes for a, r in zip(planned.plan.actions, results, strict=True)):
        return planned, results
    from reconciler.core.verify import observed

    fresh = make_plan(source, hv, memo=memo, every_size=True, check_target=False)
    return fresh, observed(planned.plan, results, fresh.plan)
