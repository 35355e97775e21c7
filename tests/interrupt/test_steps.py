"""The step boundaries and the mark's record of unfinished work, without libvirt."""

from __future__ import annotations

import inspect

import pytest

from reconciler.adapters.libvirt import Libvirt
from reconciler.apply.steps import WRITES, Interrupted, Steps
from reconciler.core.model.common import Mark, Pending
from reconciler.core.xml import common as xmlcommon

# Every other public method of the adapter only reads the host.
READS = {
    "close", "free_memory", "host_interfaces", "max_vcpus", "domain_type", "domain_xml",
    "domain_state", "read_raw_domains", "read_live", "read_observed", "read_raw_domain",
    "read_definition", "live_values", "read_raw_networks", "read_networks", "network_xml",
    "read_raw_pools", "read_pools", "read_raw_volume", "read_volumes", "volume",
    "volume_exists", "domains_using", "watch", "register_events", "deregister_events",
    "alive", "host_routes", "hostname", "local", "read_raw_volumes", "real_paths", "taken",
    "live_cpu", "host_uuid", "refresh_pool",
}


def test_every_call_of_the_adapter_is_a_step_or_a_read():
    public = {name for name, _ in inspect.getmembers(Libvirt) if not name.startswith("_")}
    public -= {"conn", "uri", "readonly"}
    assert public >= WRITES, WRITES - public
    unknown = public - WRITES - READS
    assert not unknown, "new adapter calls: add each to WRITES (it changes the host) or READS"


class _Fake:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def define(self, xml: str) -> None:
        self.calls.append("define")

    def domain_xml(self, name: str) -> str:
        return "<domain/>"


def test_a_halt_stops_before_the_next_write_but_not_inside_the_step_in_flight():
    fake, halted = _Fake(), [False]
    steps = Steps(fake, halt=lambda: halted[0])  # type: ignore[arg-type]
    hv = steps.hv
    steps.begin()
    hv.define("<domain/>")
    halted[0] = True
    assert hv.domain_xml("x") == "<domain/>"  # reads go on
    with steps.finishing():
        hv.define("<domain/>")  # the forced power-off that ends a graceful shutdown
    with pytest.raises(Interrupted, match="define"):
        hv.define("<domain/>")
    assert fake.calls == ["define", "define"] and steps.done == 2


def test_the_record_is_read_back_and_never_names_a_volume_freely():
    entries = (Pending("create", "disk", "root", "default"), Pending("write", "seed", "", "p"),
               Pending("delete", "disk", "data", "fast"),
               Pending("unplug", "nic", "52:54:00:00:00:01"))
    mark = Mark("vm.yaml", "h", None, {}, "i", pending=entries)
    root = xmlcommon.parse(f"<domain><name>x</name><metadata>{xmlcommon.mark_xml(mark)}"
                           "</metadata></domain>")
    assert xmlcommon.read_mark(root) == mark
    # Entries the tool would not write (edited by hand) are left out: no volume attribute is
    # read at all (a volume is always <vm>-<disk> or <vm>-cidata).
    edited = xmlcommon.mark_xml(mark).replace(
        "</reconciler:vm>",
        '<reconciler:pending op="delete" part="disk" key="" pool="default"/>'
        '<reconciler:pending op="create" part="seed" pool="default"/>'
        '<reconciler:pending op="drop" part="disk" key="root" pool="default"/>'
        '<reconciler:pending op="delete" part="disk" key="x" volume="other-vm-root"/>'
        "</reconciler:vm>")
    root = xmlcommon.parse(f"<domain><name>x</name><metadata>{edited}</metadata></domain>")
    read = xmlcommon.read_mark(root)
    assert read is not None and read.pending == entries
