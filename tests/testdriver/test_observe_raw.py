"""The libvirt adapter's raw reads on libvirt's test driver: the state and its reason as words,
the managed-save image, transient domains, pool sizes; and the live model made from them."""

from __future__ import annotations

import libvirt
from conftest import run_cli, vm_manifest, write_manifest

from reconciler.adapters.libvirt import Libvirt, states

URI = "test:///default"

TRANSIENT = """<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>
<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"""


def test_state_and_reason_words_come_from_libvirt_s_names() -> None:
    assert states.state_word(libvirt.VIR_DOMAIN_SHUTOFF) == "shut off"
    assert states.state_word(libvirt.VIR_DOMAIN_PMSUSPENDED) == "pmsuspended"
    assert states.state_word(99) == "unknown"
    assert states.reason_word(libvirt.VIR_DOMAIN_PAUSED,
                              libvirt.VIR_DOMAIN_PAUSED_IOERROR) == "ioerror"
    assert states.reason_word(libvirt.VIR_DOMAIN_RUNNING,
                              libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT) == "from snapshot"
    assert states.reason_word(libvirt.VIR_DOMAIN_SHUTOFF,
                              libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED) == "destroyed"
    assert states.reason_word(libvirt.VIR_DOMAIN_SHUTOFF, 99) == "unknown"
    assert states.is_running(libvirt.VIR_DOMAIN_PAUSED)
    assert not states.is_running(libvirt.VIR_DOMAIN_CRASHED)


def test_raw_domains_and_the_live_model_made_from_them(testdrv, prefix, tmp_path):
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    write_manifest(m, "b.yaml", vm_manifest(f"{prefix}b"))
    result = run_cli("apply", "--yes", "--connect", URI, "--state-dir", tmp_path / "s", m)
    assert result.code == 0, result.stdout + result.stderr
    testdrv.lookupByName(f"{prefix}a").suspend()
    saved = testdrv.lookupByName(f"{prefix}b")
    saved.managedSave(0)
    transient = testdrv.createXML(TRANSIENT.format(name=f"{prefix}t"), 0)
    hv = Libvirt(URI, readonly=True)
    try:
        raw = {r.name: r for r in hv.read_raw_domains() if r.name.startswith(prefix)}
        live = {v.name: v for v in hv.read_live() if v.name.startswith(prefix)}
        one = hv.read_raw_domain(f"{prefix}b")
        pools = {p.name: p for p in hv.read_raw_pools()}
    finally:
        hv.close()
        saved.managedSaveRemove(0)  # else the domain cannot be undefined
        transient.destroy()  # gone with it
    a, b, t = raw[f"{prefix}a"], raw[f"{prefix}b"], raw[f"{prefix}t"]
    assert (a.state, a.reason, a.running, a.live_xml is not None) == ("paused", "user", True, True)
    assert (b.state, b.reason, b.managed_save, b.id, b.live_xml) == (
        "shut off", "saved", True, None, None)
    assert one == b
    assert (t.state, t.reason, t.persistent, a.persistent) == ("running", "booted", False, True)
    vm_a, vm_b, vm_t = live[f"{prefix}a"], live[f"{prefix}b"], live[f"{prefix}t"]
    assert (vm_a.state, vm_a.reason, vm_a.running, vm_a.domain_id) == (
        "paused", "user", True, a.id)
    assert (vm_b.state, vm_b.running, vm_b.managed_save) == ("shut off", False, True)
    assert (vm_t.persistent, vm_t.managed) == (False, False)
    pool = pools["default-pool"]
    assert pool.active and pool.capacity > 0 and pool.capacity >= pool.available
    assert f"{prefix}a-root" not in pool.volumes  # the manifests have no disks


def test_a_host_read_by_reader_threads_reads_as_one_read_in_this_thread(testdrv, prefix,
                                                                       tmp_path, monkeypatch):
    """A host of at most one batch of domains is read in the calling thread (no reader threads,
    no concurrent.futures); a bigger one by reader threads, a batch each. Both read the same."""
    import threading

    from reconciler.adapters.libvirt import inventory

    readers: list[str] = []  # the threads that fetched each batch
    fetch = inventory._fetch_domains

    def fetching(batch, flags):  # type: ignore[no-untyped-def]
        readers.append(threading.current_thread().name)
        return fetch(batch, flags)

    monkeypatch.setattr(inventory, "_fetch_domains", fetching)

    m = tmp_path / "m"
    for n in range(5):
        write_manifest(m, f"{n}.yaml", vm_manifest(
            f"{prefix}r{n}", state="stopped",
            disks="- {name: root, size: 1MiB, pool: default-pool}"))
    result = run_cli("apply", "--yes", "--connect", URI, "--state-dir", tmp_path / "s", m)
    assert result.code == 0, result.stdout + result.stderr
    hv = Libvirt(URI)
    try:
        here = hv.read_observed()  # 6 domains with the driver's own: one batch
        raw_here = hv.read_raw_domains()
        assert set(readers) == {threading.current_thread().name}
        readers.clear()
        monkeypatch.setattr(inventory, "_BATCH", 2)  # 3 batches: the reader threads
        threaded = hv.read_observed()
        raw_threaded = hv.read_raw_domains()
        assert len(readers) == 6 and all(r.startswith("libvirt-read") for r in readers)
    finally:
        hv.close()
    assert threaded == here and raw_threaded == raw_here
    sizes = {vm.name: [d.size for d in vm.config.disks] for vm in here.vms
             if vm.name.startswith(prefix)}
    assert sizes == {f"{prefix}r{n}": [1 << 20] for n in range(5)}  # the sizes were read
