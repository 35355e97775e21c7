"""``bench/fleet_bench.py --quick`` runs (10 hosts x 10 VMs) and prints its figures, so that the
benchmark cannot rot. Not timed: the figures are not checked against the target."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_fleet_benchmark_runs_and_prints_its_figures(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["PYTHONPATH"] = str(ROOT)
    env["TMPDIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fleet_bench.py"), "--quick"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "fleet: 10 hosts x 10 VMs from snapshots; cores: os.cpu_count()=" in out
    assert ("hv-000 planned from its own snapshot, and hv-009 from its derived one: "
            "No changes") in out
    assert "plan: Fleet: 10 hosts: 2 to create, 2 to update, 0 to destroy, 2 to move" in out
    for label in ("raw read (json.load)", "plan (cold cache)", "plan (warm cache)"):
        assert any(line.startswith(label) and line.endswith("x") for line in out.splitlines())
    assert "total (cold cache): " in out and " ms per host, " in out and "x the raw read" in out
    assert "target: 10 hosts x 10 VMs in < 10s on 2 cores: " in out
    assert not list(tmp_path.glob("fleet-bench-*"))  # its temporary folder is removed
