"""Resource targeting (`plan`/`apply --target PATTERN -l SELECTOR`): a run limited to some
VMs, as Terraform's ``-target``. Pure.

A ``Targeting`` chooses, from the manifests and the live objects of this instance, the VMs a
run plans, and with them the networks and pools those VMs refer to (their dependencies, as
Terraform includes a target's dependencies). Everything else is left out before the diff:
neither created, changed nor destroyed (an untargeted orphan is not pruned), but still seen as
a user of its network, pool, volumes and MACs.

- ``--target PATTERN`` (repeatable; several are OR): an ``fnmatch`` glob on VM names
  (``web-*``), or on networks' and pools' names with a kind prefix (``network/lab``,
  ``pool/fast``; ``vm/web-01`` is a VM). A pattern matches declared objects and this
  instance's live ones (an orphan's name too: targeting it prunes it).
- ``-l/--selector KEY=VALUE[,...]`` (repeatable; all must match, as kubectl's): on a VM
  manifest's ``metadata.labels``. ``KEY=VALUE`` (or ``==``), ``KEY!=VALUE`` (the key absent
  counts as not equal), ``KEY`` (present), ``!KEY`` (absent). Only VMs with a manifest have
  labels: a selector never chooses an orphan.
- Patterns and selector together: a VM must match both (AND).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.core.live import LiveState
from reconciler.core.model.vm import VMSpec
from reconciler.core.plan import Action, Partial, Resource
from reconciler.core.record import Record
from reconciler.core.validate.result import Validated

# Kind prefixes of a pattern (case-insensitive, as kind names on the command line are).
_KINDS = {"vm": Resource.VM, "virtualmachine": Resource.VM, "network": Resource.NETWORK,
          "pool": Resource.POOL, "storagepool": Resource.POOL}
_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")
_OPERATORS = ("==", "!=", "=")


@dataclass(frozen=True, eq=False, repr=False)
class Pattern(Record):
    """One ``--target``: a glob on the names of one kind (VMs without a prefix)."""

    resource: Resource
    glob: str
    text: str  # as given

    def matches(self, resource: Resource, name: str) -> bool:
        return resource == self.resource and fnmatch.fnmatchcase(name, self.glob)


@dataclass(frozen=True, eq=False, repr=False)
class Requirement(Record):
    """One term of a label selector. ``op``: ``=``, ``!=``, ``exists`` or ``!exists``."""

    key: str
    op: str
    value: str = ""

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "!=":
            return labels.get(self.key) != self.value
        return labels.get(self.key) == self.value

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return f"!{self.key}"
        return f"{self.key}{self.op}{self.value}"


def parse_pattern(text: str) -> Pattern:
    """A ``--target`` value: ``GLOB`` (VMs), or ``KIND/GLOB`` with KIND ``vm``, ``network`` or
    ``pool`` (any case). Raises ``ValueError`` for an empty glob or an unknown kind. Pure."""
    kind, slash, glob = text.partition("/")
    if not slash:
        kind, glob = "vm", text
    resource = _KINDS.get(kind.lower())
    if resource is None:
        raise ValueError(f"{text!r}: unknown kind {kind!r}; write NAME (a VM), network/NAME "
                         "or pool/NAME (globs allowed)")
    if not glob.strip():
        raise ValueError(f"{text!r}: no name; write NAME, network/NAME or pool/NAME")
    return Pattern(resource, glob, text)


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """A label selector as kubectl spells it: ``tier=web,env!=prod,backup,!legacy``. Raises
    ``ValueError`` naming the term that is not one. Pure."""
    out = []
    for term in (t.strip() for t in text.split(",")):
        if not term:
            raise ValueError(f"{text!r}: empty term; write KEY=VALUE[,KEY=VALUE]")
        op = next((o for o in _OPERATORS if o in term), None)
        if op is None:
            key, kind = (term[1:], "!exists") if term.startswith("!") else (term, "exists")
            value = ""
        else:
            key, _, value = (t.strip() for t in term.partition(op))
            kind = "=" if op == "==" else op
        if not _KEY.match(key) or any(c in value for c in "=!"):
            raise ValueError(f"{term!r} is not a label requirement; write KEY=VALUE, "
                             "KEY!=VALUE, KEY or !KEY")
        out.append(Requirement(key, kind, value))
    return tuple(out)


@dataclass(frozen=True, eq=False, repr=False)
class Targeting(Record):
    """What a run is limited to; empty (the default, and always the daemon's): everything."""

    patterns: tuple[Pattern, ...] = ()
    selector: tuple[Requirement, ...] = ()

    @classmethod
    def of(cls, targets: Iterable[str] = (), selectors: Iterable[str] = ()) -> Targeting:
        """From the options' values (``--target``, ``-l``). Raises ``ValueError``. Pure."""
        return cls(tuple(parse_pattern(t) for t in targets),
                   tuple(r for s in selectors for r in parse_selector(s)))

    @property
    def active(self) -> bool:
        return bool(self.patterns or self.selector)

    @property
    def text(self) -> str:
        """As the options would be given: ``--target web-* -l tier=web``."""
        parts = [f"--target {p.text}" for p in self.patterns]
        if self.selector:
            parts.append("-l " + ",".join(str(r) for r in self.selector))
        return " ".join(parts)

    def as_json(self) -> dict[str, object]:
        return {"targets": [p.text for p in self.patterns],
                "selector": ",".join(str(r) for r in self.selector)}

    def chooses(self, name: str, labels: dict[str, str] | None) -> bool:
        """Whether this targeting chooses the VM ``name`` with ``labels`` (None: not known,
        as of a domain whose manifest is gone). Pure."""
        return self._vm_chosen(name, labels)

    def _vm_chosen(self, name: str, labels: dict[str, str] | None) -> bool:
        vm_patterns = [p for p in self.patterns if p.resource == Resource.VM]
        if self.selector and (labels is None
                              or not all(r.matches(labels) for r in self.selector)):
            return False
        if vm_patterns:
            return any(p.matches(Resource.VM, name) for p in vm_patterns)
        # Only patterns of other kinds: no VM, unless a selector chose it.
        return bool(self.selector)

    def choose(self, inputs: Validated, live: LiveState, instance: str) -> Chosen:
        """The VMs, networks and pools this run plans (see the module). Pure."""
        desired = {d.spec.name: d for d in inputs.vms}
        mine = {vm.name for vm in live.vms if vm.managed}  # owned_view: this instance's
        vms = {name for name, d in desired.items() if self._vm_chosen(name, _labels(d.spec))}
        vms |= {name for name in mine - set(desired) if self._vm_chosen(name, None)}
        nets = {n.spec.name for n in inputs.networks} | {
            n.name for n in live.networks if n.mark is not None and n.mark.instance == instance}
        pools = {p.spec.name for p in inputs.pools} | {
            p.name for p in live.pools if p.owner == instance}
        chosen_nets = {n for n in nets if any(p.matches(Resource.NETWORK, n)
                                              for p in self.patterns)}
        chosen_pools = {n for n in pools if any(p.matches(Resource.POOL, n)
                                                for p in self.patterns)}
        for name in vms & set(desired):  # the targeted VMs' dependencies
            spec = desired[name].spec
            chosen_nets |= {n.network for n in spec.nics if n.network}
            chosen_pools |= {d.pool for d in spec.disks}
            if spec.cloud_init is not None:
                chosen_pools.add(spec.cloud_init.pool)
        return Chosen(frozenset(vms), frozenset(chosen_nets), frozenset(chosen_pools),
                      total=len(set(desired) | mine))

    def misses(self, inputs: Validated, live: LiveState, instance: str) -> list[str]:
        """Why this targeting is refused: each pattern that matches no declared object nor
        one of this instance's, and a targeting that chooses nothing. Empty: it may run.
        Pure."""
        out: list[str] = []
        if self.patterns:  # (the names are not gathered for a run with no --target)
            names = {
                Resource.VM: {d.spec.name for d in inputs.vms}
                | {vm.name for vm in live.vms if vm.managed},
                Resource.NETWORK: {n.spec.name for n in inputs.networks}
                | {n.name for n in live.networks if n.mark is not None
                   and n.mark.instance == instance},
                Resource.POOL: {p.spec.name for p in inputs.pools}
                | {p.name for p in live.pools if p.owner == instance},
            }
            out = [f"--target {p.text} matches no {_WORD[p.resource]} of instance {instance} "
                   f"(declared in a valid manifest or managed on the host)"
                   for p in self.patterns if not any(p.matches(p.resource, n)
                                                     for n in names[p.resource])]
        if not out and self.active and not self.choose(inputs, live, instance).any:
            out.append(f"{self.text} chooses nothing: no VM declared in a valid manifest "
                       "matches all of it")
        return out


_WORD = {Resource.VM: "VM", Resource.NETWORK: "network", Resource.POOL: "storage pool"}


def _labels(spec: VMSpec) -> dict[str, str]:
    return dict(spec.labels)


@dataclass(frozen=True, eq=False, repr=False)
class Chosen(Record):
    """What a targeted run plans, by name; ``total``: the VMs declared or managed in all."""

    vms: frozenset[str]
    networks: frozenset[str]
    pools: frozenset[str]
    total: int = 0

    @property
    def any(self) -> bool:
        return bool(self.vms or self.networks or self.pools)

    def has(self, action: Action) -> bool:
        names = {Resource.VM: self.vms, Resource.NETWORK: self.networks,
                 Resource.POOL: self.pools}[action.resource]
        return action.name in names

    def partial(self, targeting: Targeting) -> Partial:
        """What the plan says of this targeted run (``Plan.partial``)."""
        return Partial(targeting.text, tuple(p.text for p in targeting.patterns),
                       ",".join(str(r) for r in targeting.selector), tuple(sorted(self.vms)),
                       tuple(sorted(self.networks)), tuple(sorted(self.pools)), self.total)

    def narrow(self, inputs: Validated) -> Validated:
        """The manifests of the chosen objects only (the problems all kept). Pure."""
        return Validated(tuple(d for d in inputs.vms if d.spec.name in self.vms),
                         inputs.problems,
                         tuple(n for n in inputs.networks if n.spec.name in self.networks),
                         tuple(p for p in inputs.pools if p.spec.name in self.pools))

