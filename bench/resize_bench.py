#!/usr/bin/env python3
"""Benchmark: a live resize of N running OS-less VMs with `reconciler apply`, against raw
libvirt-python calls doing the same in the same run.

Two figures, each beside its target (N = 10 by default):

1. vCPU-only: vcpus 1 -> 2 (within maxVcpus 2) on every VM. Target: at most 0.3 s.
2. vCPU + memory: vcpus 1 -> 2 and memory 128MiB -> 64MiB (a balloon target below maxMemory
   128MiB) on a fresh set of VMs.
   An OS-less guest has no balloon driver, so every VM's balloon target stays untaken: apply
   waits one settle window (3 s) for all of them together and reports them pending restart.
   Target: at most 3.5 s.

Each figure is the wall time of the whole `reconciler apply --yes` process (plan, apply, the
fresh read that verifies the results), the median of ``--repeat`` rounds. Beside it, the raw
baseline: one Python process that opens a connection and calls setVcpusFlags (and
setMemoryFlags) on each VM, with no waiting. These are figures, not a test: the script exits 0
whether the targets are met or not, 1 only when the benchmark could not run. Everything it
creates is named ``bench-<hex>-*`` and removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import libvirt

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
TARGETS = {"vcpus": 0.3, "vcpus+memory": 3.5}

RAW = """\
import sys, libvirt
conn = libvirt.open(sys.argv[1])
vcpus, memory = int(sys.argv[2]), int(sys.argv[3])
for name in sys.argv[4:]:
    dom = conn.lookupByName(name)
    dom.setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    if memory:
        dom.setMemoryFlags(memory, libvirt.VIR_DOMAIN_AFFECT_LIVE
                           | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
"""


def manifest(name: str, vcpus: int, memory: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: VirtualMachine
        metadata: {{name: {name}}}
        spec:
          vcpus: {vcpus}
          maxVcpus: 2
          memory: {memory}
          maxMemory: 128MiB
          shutdownTimeout: 1s
        """)


def write_all(folder: Path, names: list[str], vcpus: int, memory: str) -> None:
    for name in names:
        (folder / f"{name}.yaml").write_text(manifest(name, vcpus, memory))


def apply(args: argparse.Namespace, folder: Path, state: Path) -> float:
    started = time.monotonic()
    r = subprocess.run([args.reconciler, "apply", "--yes", "--connect", args.connect,
                        "--state-dir", str(state), "--parallel", str(args.parallel),
                        str(folder)], capture_output=True, text=True,
                       env={**os.environ, "RECONCILER_INSTANCE": folder.name})
    seconds = time.monotonic() - started
    if r.returncode not in (0, 1) or re.search(r"[1-9][0-9]* failed", r.stdout):
        print(r.stdout, r.stderr, file=sys.stderr)
    return seconds


def raw(args: argparse.Namespace, names: list[str], vcpus: int, memory_kib: int) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", RAW, args.connect, str(vcpus), str(memory_kib),
                    *names], check=True)
    return time.monotonic() - started


def cleanup(conn: libvirt.virConnect, prefix: str) -> None:
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            if dom.isActive():
                dom.destroy()
            dom.undefine()


def round_of(args: argparse.Namespace, conn: libvirt.virConnect, work: Path, prefix: str,
             number: int) -> dict[str, tuple[float, float]]:
    """One round: for each resize, 2N fresh running VMs (memory = maxMemory: nothing to
    balloon yet); the tool resizes N of them, raw calls the other N."""
    out = {}
    for index, (label, memory) in enumerate((("vcpus", "128MiB"), ("vcpus+memory", "64MiB"))):
        tag = f"{prefix}{number}{index}"
        folder, raw_folder = work / f"{tag}t", work / f"{tag}r"  # two reconciler instances
        folder.mkdir()
        raw_folder.mkdir()
        tool_vms = [f"{tag}t{i:02d}" for i in range(args.count)]
        raw_vms = [f"{tag}r{i:02d}" for i in range(args.count)]
        write_all(folder, tool_vms, 1, "128MiB")
        write_all(raw_folder, raw_vms, 1, "128MiB")
        apply(args, folder, work / "state")
        apply(args, raw_folder, work / "state-raw")
        write_all(folder, tool_vms, 2, memory)
        tool = apply(args, folder, work / "state")
        base = raw(args, raw_vms, 2, (64 << 10) if label != "vcpus" else 0)
        out[label] = (tool, base)
        cleanup(conn, tag)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connect", default="qemu:///system")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--reconciler", default=RECONCILER)
    args = parser.parse_args()
    prefix = f"bench-{secrets.token_hex(3)}-"
    conn = libvirt.open(args.connect)
    rounds: list[dict[str, tuple[float, float]]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for number in range(args.repeat):
                rounds.append(round_of(args, conn, Path(tmp), prefix, number))
    except (OSError, subprocess.CalledProcessError, libvirt.libvirtError) as exc:
        print(f"resize_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup(conn, prefix)
    print(f"{args.count} running OS-less VMs, --parallel {args.parallel}, {args.repeat} rounds "
          "(median):")
    for label, target in TARGETS.items():
        tool = statistics.median(r[label][0] for r in rounds)
        base = statistics.median(r[label][1] for r in rounds)
        verdict = "met" if tool <= target else "NOT met"
        print(f"  {label:<13} apply {tool:6.2f} s   raw libvirt {base:5.2f} s   "
              f"ratio {tool / base:5.1f}x   target {target} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
