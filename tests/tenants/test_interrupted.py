"""Work a SIGTERM interrupted before it started is pending, not failed: nothing was tried, and
the next run does it (real libvirtd, the daemon as a process)."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import run_cli, vm_manifest, write_manifest
from writers import Writer


@pytest.mark.libvirtd
def test_vms_a_sigterm_kept_from_starting_are_pending(host, tmp_path) -> None:
    manifests = tmp_path / "manifests"
    names = [f"{host.prefix}v{i}" for i in range(6)]
    for name in names:
        write_manifest(manifests, f"{name}.yaml", vm_manifest(name, disks="""
            - name: root
              size: 64MiB
            """))
    daemon = Writer(manifests, tmp_path / "state", host.uri, tmp_path / "run.log",
                    "--parallel", "1")
    try:
        deadline = time.monotonic() + 60
        while not host.exists(names[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert host.exists(names[0]), daemon.output()
    finally:
        assert daemon.stop(signal.SIGTERM) == 0, daemon.output()

    r = run_cli("status", "--state-dir", tmp_path / "state")
    print(r.stdout)
    lines = {line.split()[0]: line for line in r.stdout.splitlines()[1:-1]}
    assert set(lines) == set(names)
    never = [n for n in names if not host.exists(n)]
    assert never, "the SIGTERM came too late to keep any VM from starting"
    for name in never:
        assert lines[name].split()[1] == "pending", lines[name]
        assert "interrupted before it started" in lines[name]
    assert not any(line.split()[1] == "failed" for line in lines.values()), r.stdout
    assert r.code == 2  # work pending, nothing failed
