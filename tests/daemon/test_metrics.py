"""The daemon's Prometheus metrics as a scraper reads them from /metrics: one
``reconciler_vm_info`` series per VM (gone with the VM), the build, label values without
spaces, and actions counted only when they were carried out."""

from __future__ import annotations

import platform
import urllib.request

import daemonproc
import libvirt
from conftest import TEST_URI, vm_manifest, write_manifest
from daemonproc import wait_for
from prometheus_client.parser import text_string_to_metric_families

import reconciler
from reconciler import pipeline
from reconciler.adapters.libvirt import Libvirt
from reconciler.apply.executor import Settings, execute
from reconciler.core.result import Outcome
from reconciler.shells import accounting
from reconciler.shells.metrics import Metrics

daemon_factory = daemonproc.daemon_factory  # the fixture

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(port: int) -> Samples:
    """Every sample on /metrics: name -> [(labels, value)]."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    out: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def vm_info(samples: Samples) -> set[tuple[str, str, str]]:
    return {(labels["name"], labels["state"], labels["sync"])
            for labels, value in samples.get("reconciler_vm_info", []) if value == 1}


def _libvirt_version() -> str:
    number = libvirt.getVersion()
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def test_each_vm_has_an_info_series_and_no_label_value_has_a_space(tmp_path, daemon_factory,
                                                                   prefix):
    """On test:///default (the daemon's own, in its process): a running and a stopped VM in
    sync, one blocked (its pool does not exist), and `test`, the driver's own domain, which a
    manifest names: a conflict. A VM whose manifest goes is destroyed, and its series goes."""
    m = tmp_path / "m"
    on, off, blocked = f"{prefix}on", f"{prefix}off", f"{prefix}blk"
    write_manifest(m, "on.yaml", vm_manifest(on))
    write_manifest(m, "off.yaml", vm_manifest(off, state="stopped"))
    write_manifest(m, "blk.yaml", vm_manifest(blocked, disks="""
        - {name: root, size: 8MiB, pool: nopool}
    """))
    write_manifest(m, "test.yaml", vm_manifest("test"))
    daemon = daemon_factory(m, TEST_URI)
    daemon.wait_ready()
    samples = scrape(daemon.port)

    assert vm_info(samples) == {(on, "running", "in_sync"), (off, "shut_off", "in_sync"),
                                (blocked, "absent", "blocked"), ("test", "running", "conflict")}
    assert samples["reconciler_build_info"] == [
        ({"version": reconciler.__version__, "python": platform.python_version(),
          "libvirt": _libvirt_version()}, 1.0)]
    spaced = [(name, labels) for name, series in samples.items() for labels, _ in series
              if any(not value or any(c.isspace() for c in value)
                     for key, value in labels.items() if key not in ("commit",))]
    assert spaced == []
    managed = {labels["status"]: value for labels, value in samples["reconciler_managed_vms"]}
    assert managed["in_sync"] == 2 and managed["pending_restart"] == 0
    assert managed["blocked"] == 1 and managed["conflict"] == 1
    actions = {(labels["kind"], labels["result"]): value
               for labels, value in samples["reconciler_actions_total"]}
    assert actions == {("create", "converged"): 2}, actions  # the blocked VM did nothing

    (m / "off.yaml").unlink()
    assert wait_for(lambda: (off, "shut_off", "in_sync") not in vm_info(scrape(daemon.port)),
                    10), daemon.output()
    samples = scrape(daemon.port)
    assert {name for name, _, _ in vm_info(samples)} == {on, blocked, "test"}
    actions = {(labels["kind"], labels["result"]): value
               for labels, value in samples["reconciler_actions_total"]}
    assert actions == {("create", "converged"): 2, ("destroy", "converged"): 1}


def test_actions_count_only_what_was_carried_out(testdrv, prefix, tmp_path, own_instance):
    """A plan with a change that is blocked (its pool does not exist), one that fails (a
    domain of its name appeared after the plan was made) and one that works: two actions
    were carried out. A run stopped before any action started carried out none."""
    m = tmp_path / "m"
    ok, blocked, failing = f"{prefix}ok", f"{prefix}blk", f"{prefix}fail"
    write_manifest(m, "ok.yaml", vm_manifest(ok, state="stopped"))
    write_manifest(m, "blk.yaml", vm_manifest(blocked, state="stopped", disks="""
        - {name: root, size: 8MiB, pool: nopool}
    """))
    write_manifest(m, "fail.yaml", vm_manifest(failing, state="stopped"))
    metrics = Metrics()
    metrics.serve("127.0.0.1:0")
    assert metrics.server is not None
    port = metrics.server.server_address[1]
    hv = Libvirt(TEST_URI)
    try:
        plan = pipeline.make_plan(pipeline.Source(m, own_instance), hv).plan
        stopped = execute(plan, hv, Settings(instance=own_instance, stop=lambda: True))
        metrics.record(accounting.taken(plan.actions, stopped), [])
        assert "reconciler_actions_total" not in scrape(port)

        testdrv.defineXML(f"<domain type='test'><name>{failing}</name><memory>65536</memory>"
                          "<os><type>hvm</type></os></domain>")
        results = execute(plan, hv, Settings(instance=own_instance))
    finally:
        hv.close()
    assert {r.name: r.outcome for r in results} == {
        ok: Outcome.CONVERGED, blocked: Outcome.BLOCKED, failing: Outcome.FAILED}
    metrics.record(accounting.taken(plan.actions, results), [])
    actions = {(labels["kind"], labels["result"]): value
               for labels, value in scrape(port)["reconciler_actions_total"]}
    assert actions == {("create", "converged"): 1, ("create", "failed"): 1}
