"""Regenerate ``host.snapshot.json``: the host the CI example plans against.

It applies the repository's ``manifests/`` (the main branch's desired state) to libvirt's test
driver (given a pool ``default``), in this process, and takes a snapshot of it; the host's
name, URI and the time are fixed so that the golden plan (``plan.md``) does not change from run
to run.

    PYTHONPATH=. .venv/bin/python tests/gitops/ci/make_snapshot.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

HERE = Path(__file__).parent
ROOT = HERE.parents[2]


def main() -> int:
    import libvirt

    from reconciler.adapters import snapshot
    from reconciler.adapters.libvirt import Libvirt
    from reconciler.adapters.libvirt.snapshot import take
    from reconciler.shells.cli import main as cli

    conn = libvirt.open("test:///default")  # its state lives as long as this process
    pool = conn.storagePoolDefineXML(
        "<pool type='dir'><name>default</name><target><path>/var/lib/libvirt/images</path>"
        "</target></pool>")
    pool.create()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RECONCILER_CACHE_DIR"] = ""
        result = CliRunner().invoke(cli, ["apply", "--yes", "--connect", "test:///default",
                                          "--state-dir", tmp, str(ROOT / "manifests")])
        if result.exit_code != 0:
            print(result.output, file=sys.stderr)
            return 1
    hv = Libvirt("test:///default", readonly=True)
    snap = take(hv, ["/var/lib/libvirt/images"])
    doc = snapshot.to_json(snap)
    doc.update(uri="qemu+ssh://reader@hv-01/system", hostname="hv-01",
               taken="2026-11-30T12:00:00Z", reconciler="0.1.0")
    (HERE / "host.snapshot.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
