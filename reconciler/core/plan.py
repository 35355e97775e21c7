"""The plan: what apply will do, as values. Pure.

A plan is a tuple of actions, one per resource (a VM, a network, a storage pool). An action's
``kind`` is its plan symbol (create ``+``, update ``~``, destroy ``-``, blocked ``!``); its
``steps`` are the operations apply carries out, in order, each an ``Op`` on a typed ``Target``
with its old and new values and its ``Effect`` (live, config, restart; or pending, refused: not
written). Why an action is not done is a ``Reason``: a ``Why`` code and its parameters. Only
``reconciler.core.render`` turns any of this into words; no other code reads plan text.

Values are typed: sizes in bytes, durations in seconds, booleans, tuples (boot order), a
``Disk`` or ``Nic`` for a device, the cloud-init seed by the short hash of its files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from reconciler.core.model.network import DesiredNetwork, IPv4, LiveNetwork
from reconciler.core.model.pool import DesiredPool, LivePool
from reconciler.core.model.vm import DesiredVM, Disk, LiveVM, Nic, VolumeInfo
from reconciler.core.record import Record


class Kind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DESTROY = "destroy"
    BLOCKED = "blocked"
    MOVE = "move"  # many hosts: to the host the repository now places the VM on


class Resource(StrEnum):
    VM = "vm"
    NETWORK = "network"
    POOL = "pool"


class Part(StrEnum):
    """The part of a resource a step changes (the whole resource, or one of its devices)."""

    WHOLE = ""
    DISK = "disk"  # key: the disk's name in the manifest
    NIC = "nic"  # key: its MAC ("" while libvirt has not given it one)
    SEED = "seed"  # the cloud-init seed CD-ROM and its volume <vm>-cidata
    FIELD = "field"  # key: a simple field's name in the manifest (``description``)


@dataclass(frozen=True, eq=False, repr=False)
class Target(Record):
    resource: Resource
    name: str
    part: Part = Part.WHOLE
    key: str = ""


class Effect(StrEnum):
    """How a step takes effect."""

    LIVE = "live"  # changed on the running resource, and persisted
    CONFIG = "config"  # persisted only (stopped VM, or a setting of the tool's own)
    RESTART = "restart"  # persisted now; the running VM takes it at its next start
    PENDING = "pending"  # already persisted; the running VM still waits for a restart
    REFUSED = "refused"  # will not be done (it would lose data, or cannot be done)


WRITES = (Effect.LIVE, Effect.CONFIG, Effect.RESTART)


class Op(StrEnum):
    """One operation of apply, in libvirt's terms."""

    # A domain's (network's, pool's) definition and power state.
    START = "start"
    RESUME = "resume"  # a domain paused by someone (virsh suspend)
    DEFINE = "define"  # a running domain made persistent again (it was undefined by hand)
    STOP = "stop"  # graceful ACPI shutdown, forced power-off after shutdownTimeout
    UNDEFINE = "undefine"
    ADOPT = "adopt"  # record the tool's mark on an existing domain; nothing else changes
    SET_VCPUS = "set vcpus"
    SET_MAX_VCPUS = "set max vcpus"
    SET_MEMORY = "set memory"  # the balloon target (live), <currentMemory> (config)
    SET_MAX_MEMORY = "set max memory"
    SET_AUTOSTART = "set autostart"
    SET_FIRMWARE = "set firmware"
    SET_BOOT = "set boot order"
    SET_GRAPHICS = "set graphics"
    SET_DISK_BUS = "set disk bus"
    SET_FIELD = "set field"  # a simple field (see ``model.vm.simple``); target.key: its name
    # Settings kept only in the tool's mark (the domain's <metadata>).
    SET_UPDATE_POLICY = "set update policy"
    SET_SHUTDOWN_TIMEOUT = "set shutdown timeout"
    SET_PROTECT = "set protect"
    SET_RECLAIM = "set reclaim"
    SET_MANIFEST = "set manifest"
    SET_SPEC_HASH = "set spec hash"
    # Finish what an interrupted apply recorded in the mark (``model.common.Pending``): the
    # other steps do the work; this one writes the record anew. old: the entries, as words.
    FINISH = "finish"
    # Disks, NICs and their volumes.
    CREATE_VOLUME = "create volume"  # a new volume for a disk (thin; on its image if any)
    REUSE_VOLUME = "reuse volume"  # a retained volume of the same name, grown if smaller
    ATTACH_DISK = "attach disk"  # its volume created (or a retained one reused) first
    DETACH_DISK = "detach disk"  # its volume deleted after, if reclaim is delete
    GROW_VOLUME = "grow volume"
    SHRINK_VOLUME = "shrink volume"  # always refused: data would be lost
    MOVE_VOLUME = "move volume"  # to another pool or format: always refused
    RESTORE_VOLUME = "restore volume"  # a volume that is gone: always refused
    DELETE_VOLUME = "delete volume"
    KEEP_VOLUME = "keep volume"  # destroy: the volume stays (reclaim: retain)
    ATTACH_NIC = "attach nic"
    RECONNECT_NIC = "reconnect nic"  # a running NIC off its network's bridge
    DETACH_NIC = "detach nic"
    # The cloud-init seed.
    ATTACH_SEED = "attach seed"  # build and upload it, attach it as a CD-ROM
    WRITE_SEED = "write seed"  # build and upload new content
    MOVE_SEED = "move seed"  # to another pool
    DETACH_SEED = "detach seed"  # detach (eject live) and delete its volume
    DELETE_SEED = "delete seed"  # destroy: its volume goes with the VM
    # Moves to another host (``core.moves``): old: this host's name, new: the destination's.
    PREPARE_VOLUME = "prepare volume"  # an empty volume of the disk's name and size there
    COPY_VOLUME = "copy volume"  # the volume's bytes copied there (libvirt storage streams)
    MIGRATE = "migrate"  # live migration, peer to peer, disks copied (NBD); defined there
    DEFINE_THERE = "define there"  # a stopped VM's definition, with its mark, defined there
    UNDEFINE_HERE = "undefine here"  # the definition left behind by a cold move
    DELETE_HERE = "delete here"  # a moved volume's copy on this host (the data lives there)
    # Networks and pools.
    SET_BRIDGE = "set bridge"
    SET_FORWARD = "set forward"
    SET_IPV4 = "set ipv4"
    MOVE_POOL = "move pool"  # always refused: a pool cannot move

    @property
    def recorded_only(self) -> bool:
        """A setting kept in the tool's mark, not in the domain (adoption ignores it)."""
        return self in _RECORDED_ONLY


_RECORDED_ONLY = frozenset({Op.SET_UPDATE_POLICY, Op.SET_SHUTDOWN_TIMEOUT, Op.SET_PROTECT,
                            Op.SET_RECLAIM})


class Cause(StrEnum):
    """Why a step waits or is limited (a step's note)."""

    NOT_PLUGGED = "not plugged"  # persisted, but not plugged into the running VM: hot-plug
    NOT_RELEASED = "not released"  # the guest has not released an unplugged device
    ABOVE_RUNNING_MAX = "above running max"  # beyond the running maxVcpus / maxMemory
    NOT_TAKEN_UP = "not taken up"  # the hypervisor or guest did not take a live change
    NOT_CONNECTED = "not connected"  # the NIC's port is gone: its network was restarted
    # Why a step is refused or changed, from what was observed before the plan:
    POOL_MISSING = "pool missing"  # the disk's (or seed's) pool is neither on the host nor declared
    NETWORK_MISSING = "network missing"  # the NIC's network is neither on the host nor declared
    IN_USE = "in use"  # names: who uses the volume (domains, or volumes it backs)
    VOLUME_FORMAT = "volume format"  # old: the existing volume, of another format
    VOLUME_LARGER = "volume larger"  # old: the existing volume, larger than the disk
    IMAGE_MISSING = "image missing"  # the disk's image is not a volume of its pool
    IMAGE_LARGER = "image larger"  # old: the image, larger than the disk made from it
    OUTSIDE_ROOTS = "outside roots"  # a pool's real path is below no storage root; names: roots
    PATH_TAKEN = "path taken"  # another pool has this directory; names: (pool, path)
    PATH_NESTED = "path nested"  # inside another pool's directory, or holding one
    NO_SPACE = "no space"  # names: (pool, bytes needed so far, bytes free in the pool)
    NO_MEMORY = "no memory"  # names: (bytes the VMs started so far need, bytes free)
    SUBNET_TAKEN = "subnet taken"  # names: (network, its subnet): the subnets overlap
    BRIDGE_TAKEN = "bridge taken"  # names: (network,): it has the bridge already
    MAC_TAKEN = "mac taken"  # names: the other domains with a NIC of this MAC
    BRIDGE_MISSING = "bridge missing"  # a NIC's host bridge is not among the host's interfaces
    VCPUS_LIMIT = "vcpus limit"  # names: (the host's limit,)
    NUMA_CELLS = "numa cells"  # the domain's NUMA cells fix its memory and vCPUs
    OVERLAY = "overlay"  # names: (overlay path,): the disk runs on an external snapshot


Value = int | bool | str | tuple[str, ...] | Disk | Nic | IPv4 | VolumeInfo | None


@dataclass(frozen=True, eq=False, repr=False)
class Step(Record):
    op: Op
    target: Target
    old: Value = None
    new: Value = None
    effect: Effect = Effect.CONFIG
    cause: Cause | None = None
    detail: str = ""  # NOT_TAKEN_UP: what libvirt or the guest said (recorded on the domain)
    names: tuple[str, ...] = ()  # IN_USE: who uses the volume
    device: str = ""  # ATTACH_DISK on an existing domain: the target the plan chose (vdc)

    @property
    def writes(self) -> bool:
        return self.effect in WRITES


class Why(StrEnum):
    """Why an action is blocked (not done)."""

    CONFLICT = "conflict"  # an object with the name exists that this tool did not create
    OTHER_INSTANCE = "other instance"  # names: (the instance that manages it,)
    ADOPT_MISMATCH = "adopt mismatch"  # steps: what differs between manifest and domain
    SUSPENDED = "suspended"  # annotation reconciler/suspend
    MANIFEST_PROBLEMS = "manifest problems"  # count: problems in this run
    EMPTY_SET = "empty set"  # the manifest set is empty and --allow-empty was not given
    SINGLE_FILE = "single file"  # PATH is one file, not the manifest directory
    TOO_MANY_DESTROYS = "too many destroys"  # count: destroys wanted; limit: --max-destroy
    CORRUPT_MARK = "corrupt mark"  # the tool's metadata is unreadable
    PROTECTED = "protected"  # protect: true in the last applied spec
    IN_USE = "in use"  # names: the VMs still using the network or pool
    POOL_INACTIVE = "pool inactive"  # its owner cannot be checked while it is inactive
    DESTROY_FAILED = "destroy failed"  # apply: a VM destroy failed, so nothing is removed
    DOMAIN_STATE = "domain state"  # names: (state, reason): a state only a person resolves
    MANAGED_SAVE = "managed save"  # its next start resumes a saved image with the old config
    PENDING_DESTROY = "pending destroy"  # prune: confirm, and no `reconciler approve NAME` yet
    ORPHANED = "orphaned"  # prune: off: its manifest is gone, it is never destroyed
    LEAVING = "leaving"  # names: (host,): the repository places the VM on another host
    UNPLACED = "unplaced"  # names: (why,): many hosts: no host may run the VM now
    ARRIVING = "arriving"  # names: (host,): it runs there, and moves here (not created twice)
    MOVE_QUEUED = "move queued"  # limit: maxMoves: more moves than one run starts
    MOVE_BLOCKED = "move blocked"  # names: (destination host, why the move cannot start)
    STRANDED = "stranded"  # names: (host,): it runs on a Host no longer declared
    PEER_UNREAD = "peer unread"  # names: "host (error)": it may run there; not created
    # names: (host, volumes, why): volumes here with its volumes' names, used by nothing, that
    # may be the copy a stopped move to that host left: kept (not known to be the copy)
    LEFT_BEHIND = "left behind"


# Many hosts: what will not be done and is no choice of the manifests' (a move that cannot
# start, a VM no host may run, a create while another host is unread): `plan` exits 1, as for
# a refused change. A VM arriving or leaving is work another host does (pending).
STUCK = frozenset({Why.MOVE_BLOCKED, Why.UNPLACED, Why.PEER_UNREAD, Why.STRANDED,
                   Why.LEFT_BEHIND})
ELSEWHERE = frozenset({Why.ARRIVING, Why.LEAVING, Why.MOVE_QUEUED})

HELD_BACK = frozenset({Why.MANIFEST_PROBLEMS, Why.EMPTY_SET, Why.SINGLE_FILE,
                       Why.TOO_MANY_DESTROYS, Why.PENDING_DESTROY, Why.ORPHANED})


@dataclass(frozen=True, eq=False, repr=False)
class Reason(Record):
    why: Why
    count: int = 0
    limit: int = 0
    names: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()


Desired = DesiredVM | DesiredNetwork | DesiredPool
Live = LiveVM | LiveNetwork | LivePool


@dataclass(frozen=True, eq=False, repr=False)
class Action(Record):
    kind: Kind
    target: Target
    steps: tuple[Step, ...] = ()
    reason: Reason | None = None  # blocked: why
    restart: bool = False  # apply restarts the VM to finish restart-needing steps
    desired: Desired | None = None
    live: Live | None = None

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def resource(self) -> Resource:
        return self.target.resource

    @property
    def label(self) -> str:
        """The name as plans show it: VMs bare, others prefixed (``network/lab``)."""
        if self.resource == Resource.VM:
            return self.name
        return f"{self.resource}/{self.name}"

    @property
    def writes(self) -> bool:
        """Whether apply changes anything for this action (a refused step blocks it all)."""
        if self.refused:
            return False
        if self.kind in (Kind.CREATE, Kind.DESTROY):
            return True
        if self.kind == Kind.BLOCKED:  # a suspended VM's steps are shown, not made
            return False
        return self.restart or any(s.writes for s in self.steps)

    @property
    def conflict(self) -> bool:
        """An object with the manifest's name exists and is not this tool's to change (nor to
        adopt as it is)."""
        return self.reason is not None and self.reason.why in (
            Why.CONFLICT, Why.OTHER_INSTANCE, Why.ADOPT_MISMATCH)

    @property
    def stuck(self) -> bool:
        """Will not be done, and waiting will not help: a refused change, a conflict, or a
        move or create that cannot be made (``STUCK``): `plan` exits 1 for it."""
        return self.refused or self.conflict or (
            self.reason is not None and self.reason.why in STUCK)

    @property
    def elsewhere(self) -> bool:
        """Work another host of the fleet does (a VM arriving or leaving): pending here."""
        return self.reason is not None and self.reason.why in ELSEWHERE

    @property
    def suspended(self) -> bool:
        """Left as it is on purpose (annotation reconciler/suspend): not a failure."""
        return self.reason is not None and self.reason.why == Why.SUSPENDED

    @property
    def refused(self) -> bool:
        return any(s.effect == Effect.REFUSED for s in self.steps)

    @property
    def pending_restart(self) -> tuple[Step, ...]:
        """Steps the running VM will only see after a restart nobody has done yet."""
        if self.restart:
            return ()
        return tuple(s for s in self.steps if s.effect in (Effect.RESTART, Effect.PENDING))

    @property
    def blocked(self) -> bool:
        """Will not be done: a reason holds it back, or a step is refused."""
        return self.kind == Kind.BLOCKED or self.refused

    @property
    def still_pending(self) -> bool:
        """Untouched by this run, only waiting for a restart nobody has done yet (its changes
        were saved by an earlier apply): listed apart, never as a change."""
        return (self.kind == Kind.UPDATE and not self.blocked and not self.writes
                and bool(self.pending_restart))

    def has(self, *ops: Op) -> bool:
        """Whether a step that writes carries out one of ``ops``."""
        return any(s.op in ops and s.writes for s in self.steps)

    def writing(self, *ops: Op) -> tuple[Step, ...]:
        """The steps that write and carry out one of ``ops``, in order."""
        return tuple(s for s in self.steps if s.op in ops and s.writes)


@dataclass(frozen=True, eq=False, repr=False)
class Partial(Record):
    """A targeted run (``core.targeting``): the options as given (``text``: ``--target web-*
    -l tier=web``; ``targets``, ``selector``), the names it planned, and how many VMs are
    declared or managed in all (``total``)."""

    text: str
    targets: tuple[str, ...]
    selector: str
    vms: tuple[str, ...]
    networks: tuple[str, ...]
    pools: tuple[str, ...]
    total: int


@dataclass(frozen=True, eq=False, repr=False)
class Plan(Record):
    actions: tuple[Action, ...]
    # A digest of what the plan read about its own objects (``core.scope``): a saved plan is
    # applied only while it is the same.
    fingerprint: str
    problems: int = 0  # manifest problems met (nothing is destroyed when there are any)
    # Each of its objects and a digest of what was read of it (``core.scope.observed``): what
    # moved, when the fingerprint differs.
    observed: tuple[tuple[str, str], ...] = ()
    # A targeted run: only these objects were planned; None: every object of the instance.
    partial: Partial | None = None

    @property
    def has_changes(self) -> bool:
        return any(a.writes for a in self.actions)

    def count(self, kind: Kind) -> int:
        """The actions of ``kind`` apply carries out (each change counts once: create, update
        or destroy)."""
        return sum(1 for a in self.actions if a.kind == kind and a.writes and not a.blocked)

    @property
    def restart_count(self) -> int:
        """Updates that leave the VM pending restart (counted among the updates too)."""
        return sum(1 for a in self.actions
                   if a.kind == Kind.UPDATE and a.writes and bool(a.pending_restart))

    @property
    def blocked_count(self) -> int:
        """What will not be done."""
        return sum(1 for a in self.actions if a.blocked)

    @property
    def changes(self) -> tuple[Action, ...]:
        """The actions a plan lists as changes: all but those still pending restart."""
        return tuple(a for a in self.actions if not a.still_pending)

    @property
    def still_pending(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.still_pending)


@dataclass(frozen=True, eq=False, repr=False)
class Header(Record):
    """What a plan was made for, shown with it (text, JSON, markdown): the reconciler
    ``instance``, the ``host`` (libvirt's hostname for it) and the ``uri`` read, the git
    ``commit`` of the manifests, whether they differ from it (``dirty``), and why there is no
    commit (``git_problem``: not a repository, dubious ownership, ...), and when it was made
    from a snapshot, the time the snapshot was taken (``snapshot``, UTC ISO 8601)."""

    instance: str
    host: str
    uri: str
    commit: str | None = None
    snapshot: str | None = None
    dirty: bool = False
    git_problem: str | None = None


def vm_target(name: str, part: Part = Part.WHOLE, key: str = "") -> Target:
    return Target(Resource.VM, name, part, key)


def domain_digest(vm: LiveVM) -> str:
    """A digest of everything the live model holds of one domain. Pure."""
    text = repr(vm) + (repr(sorted(vm.mark.applied.items())) if vm.mark else "")
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def fingerprint(live: tuple[LiveVM, ...], read: Mapping[str, str] | None = None) -> str:
    """A digest of every domain in ``live`` (the key of a cached plan, which must change with
    anything a plan could depend on; a plan's own fingerprint is narrower, see
    ``core.scope``). ``read``: domain name -> a digest of what was read of it (its XML, state
    and volume sizes, as the adapter observed them); a domain without one is digested from its
    live model. Pure."""
    read = read or {}
    digest = hashlib.sha256()
    for vm in sorted(live, key=lambda v: v.name):
        seen = read.get(vm.name) or domain_digest(vm)
        digest.update(f"{seen}\0{vm.owner}\0{vm.mark is None}\n".encode())
    return digest.hexdigest()[:16]
