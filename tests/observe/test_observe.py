"""Observation, table-driven: raw values as the libvirt adapter reads them (XML files and a few
facts) -> the live model, by the pure ``reconciler.core.observe``. No libvirt.

Each folder of ``cases/`` is one case: ``raw.yaml`` (the kind, the facts beside the XML, and for
a domain the capacities in bytes of the volumes read), the XML files (``inactive.xml`` and, for
a running domain, ``live.xml``; ``network.xml``; ``pool.xml``; ``volume.xml``) and
``expected.yaml``, the live model as plain data. After a deliberate change of the parser,
``OBSERVE_REGEN=1 pytest tests/observe`` rewrites the ``expected.yaml`` files: review the diff.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core import observe
from reconciler.core.observe import RawDomain, RawNetwork, RawPool, RawVolume

CASES = Path(__file__).parent / "cases"
CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "raw.yaml").is_file())


def plain(value: Any) -> Any:
    """A model value as YAML-ready data: dataclasses as mappings of their fields (without the
    cached fingerprint share ``seen``), enums as their value, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name != "seen"}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list | frozenset):
        items = [plain(v) for v in value]
        return sorted(items) if isinstance(value, frozenset) else items
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def text(case: Path, name: str) -> str | None:
    path = case / name
    return path.read_text() if path.exists() else None


def observed(case: Path) -> dict[str, Any]:
    """What observe makes of the case's raw values, as plain data."""
    raw = yaml.safe_load((case / "raw.yaml").read_text())
    kind, facts = raw["kind"], raw["facts"]
    if kind == "domain":
        domain = RawDomain(**facts, inactive_xml=text(case, "inactive.xml") or "",
                           live_xml=text(case, "live.xml"))
        sizes = {(pool, volume): size for pool, volume, size in raw.get("sizes", [])}
        refs = observe.domain_refs(observe.parse_domain(domain))
        vm = observe.live_vm(domain, sizes)
        assert refs.mark == vm.mark  # the first pass and the live model agree on the owner
        return {"volumes": plain(refs.volumes), "cdroms": plain(refs.cdroms), "vm": plain(vm)}
    if kind == "network":
        network = RawNetwork(**facts, xml=text(case, "network.xml") or "")
        return {"network": plain(observe.live_network(network))}
    if kind == "pool":
        pool = RawPool(**{**facts, "volumes": tuple(facts.get("volumes", ()))},
                       xml=text(case, "pool.xml") or "")
        return {"pool": plain(observe.live_pool(pool))}
    if kind == "volume":
        return {"volume": plain(observe.volume_info(RawVolume(**facts, xml=text(
            case, "volume.xml") or "")))}
    raise AssertionError(f"{case.name}: unknown kind {kind!r}")


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_observe(case: Path) -> None:
    got = observed(case)
    expected_file = case / "expected.yaml"
    if os.environ.get("OBSERVE_REGEN"):
        expected_file.write_text(yaml.safe_dump(got, sort_keys=False, width=100))
    assert got == yaml.safe_load(expected_file.read_text())


def test_the_cases_cover_what_the_adapter_reports() -> None:
    kinds = {yaml.safe_load((c / "raw.yaml").read_text())["kind"] for c in CASE_DIRS}
    assert kinds == {"domain", "network", "pool", "volume"}
    states = {yaml.safe_load((c / "raw.yaml").read_text())["facts"].get("state")
              for c in CASE_DIRS}
    assert {"running", "shut off", "paused"} <= states


@pytest.mark.parametrize("state, running, shown", [
    ("running", True, "running"), ("paused", True, "paused"), ("blocked", True, "blocked"),
    ("pmsuspended", True, "suspended"), ("shutting down", False, "shutting down"),
    ("shut off", False, "shut off"), ("crashed", False, "crashed"),
    ("no state", False, "no state"), ("unknown", False, "unknown"),
])
def test_which_states_run(state: str, running: bool, shown: str) -> None:
    case = CASES / "stopped-managed"
    domain = RawDomain(name="web-02", uuid="u", id=3, state=state, reason="unknown",
                       persistent=True, managed_save=False, autostart=False,
                       inactive_xml=text(case, "inactive.xml") or "")
    vm = observe.live_vm(domain, {})
    assert (vm.running, vm.state, vm.domain_id) == (running, shown, 3 if running else None)
    assert vm.config.state == ("running" if running else "stopped")


def test_a_pool_marker_names_the_owner_only_while_the_pool_is_active() -> None:
    volumes = ("a.qcow2", ".reconciler-default", "b.qcow2")
    assert observe.pool_owner(volumes) == "default"
    assert observe.pool_owner(("a.qcow2",)) is None
    xml = text(CASES / "pool-default", "pool.xml") or ""
    assert observe.live_pool(RawPool("default", False, True, xml, volumes=volumes)).owner is None


ROUTE_TABLE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
virbr0\t007AA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
tun0\t0000000A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
garbage line
eth1\tZZZZZZZZ\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


def test_the_host_routes_are_read_as_linux_writes_them() -> None:
    """/proc/net/route holds addresses in host order (little-endian here); the default route
    and lines that do not parse are left out."""
    assert observe.routes(ROUTE_TABLE) == (
        ("eth0", "192.0.2.0/24"), ("virbr0", "192.168.122.0/24"), ("tun0", "10.0.0.0/16"))
    assert observe.routes("") == ()
