#!/usr/bin/env python3
"""Benchmark: `reconciler plan --fleet --snapshots DIR` over a generated fleet (default 100
hosts x 100 VMs), beside a raw read of the same snapshot files (each `json.load`ed, in one
process of the same interpreter).

Target (issue 14 item 3): 100 hosts x 100 VMs from snapshots in under 10 s on a 2-core machine.
These are figures, not a test: the script exits 0 whether the target is met or not, 1 only when
the benchmark itself could not run (the generated snapshots do not plan as "No changes", the
fleet plan fails, ...); with ``--check`` it also exits 1 when the target is missed.

Hermetic: everything is generated into a temporary folder (the repository, the snapshots, the
plan caches, the config), removed at the end unless ``--keep``. One host's snapshot is real: its
share of the repository applied, in this process, to libvirt's test driver (test:///default,
which lives as long as this process) and read back by ``reconciler snapshot``'s code; the other
hosts' snapshots are derived from it by templating its domains (name, UUID, MAC, mark). Needs
libvirt-python (for the test driver), no libvirtd. See bench/README.md.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE = ROOT / "examples" / "test-node.xml"
TARGET_SECONDS = 10.0
TARGET_CORES = 2
INSTANCE = "fleet-bench"
TAKEN = "2026-12-01T12:00:00Z"
VARIANTS = 4  # the VM shapes (see vm_document); each host's pinned VMs cover them all
CLI = "from reconciler.shells.cli import main; main()"  # the console script, with our tree
# The same, planning every host in the process itself (threads), as on a machine with one CPU.
THREADS_CLI = ("from reconciler.shells import fleet; fleet._cpus = lambda: 1\n"
               "from reconciler.shells.cli import main; main()")

# The baseline: what any tool has to do at least: read and parse every snapshot file.
RAW_SCRIPT = """\
import gzip, json, sys
from pathlib import Path
n = 0
for path in sorted(Path(sys.argv[1]).iterdir()):
    if path.name.endswith(".snapshot.gz"):
        with gzip.open(path, "rb") as f:
            doc = json.load(f)
    elif path.name.endswith(".snapshot"):
        with open(path, "rb") as f:
            doc = json.load(f)
    else:
        continue
    n += len(doc["domains"])
print(n)
"""

# One fleet plan under cProfile, in a fresh process like the CLI's (no os._exit under a
# profiler), every host planned in that process, one after the other (cProfile sees neither
# other processes nor other threads). argv: OUT, then the CLI's arguments.
PROFILE_SCRIPT = """\
import cProfile, sys
out, args = sys.argv[1], sys.argv[2:]
from reconciler.shells import fleet
fleet._cpus = lambda: 1
def serial(calls, timeout):
    for call, host in calls:
        call(host)
fleet._all_at_once = serial
from reconciler.shells.cli import main
prof = cProfile.Profile()
prof.enable()
try:
    main(args)
except SystemExit:
    pass
prof.disable()
prof.dump_stats(out)
"""


@dataclass
class Fleet:
    """What was generated: the folders and what the fleet plan should say."""

    repo: Path
    snapshots: Path
    hosts: int
    vms: int  # in the repository (after the edits)
    placed: dict[str, list[str]] = field(default_factory=dict)  # host -> its VMs, applied
    creates: int = 0
    updates: int = 0
    moves: int = 0
    snapshot_bytes: int = 0


@dataclass
class Run:
    wall: float
    cpu: float  # user + system of the child
    code: int
    stdout: str
    stderr: str


# --- generating the fleet -------------------------------------------------------------------


def host_name(i: int) -> str:
    return f"hv-{i:03d}"


def vm_name(i: int) -> str:
    return f"vm-{i:05d}"  # fixed width: no name is part of another


def rack_of(host: int, racks: int) -> str:
    return f"r{host % racks:02d}"


def host_document(i: int, racks: int, nodes: Path) -> str:
    return (f"apiVersion: reconciler/v1\nkind: Host\nmetadata:\n  name: {host_name(i)}\n"
            f"  labels:\n    rack: {rack_of(i, racks)}\n    zone: z{i % 3}\n"
            f"spec:\n  uri: test://{nodes / (host_name(i) + '.xml')}\n")


def vm_document(name: str, variant: int, placement: str, memory: str | None = None) -> str:
    """One VM in one of ``VARIANTS`` shapes (each one a different mix of state, size, disks
    and NICs), placed by ``placement`` (``host: hv-001`` or a hostSelector block)."""
    state, vcpus, mem, disks = [
        ("running", 1, "64MiB", ["root 1GiB"]),
        ("stopped", 2, "128MiB", ["root 2GiB", "data 4GiB"]),
        ("running", 1, "96MiB", []),
        ("stopped", 1, "64MiB", ["root 1GiB"]),
    ][variant]
    lines = ["apiVersion: reconciler/v1", "kind: VirtualMachine", "metadata:",
             f"  name: {name}", "  labels:", f"    team: team-{int(name[3:]) % 10:02d}",
             f"    shape: s{variant}", "spec:", f"  vcpus: {vcpus}",
             f"  memory: {memory or mem}", f"  state: {state}", "  shutdownTimeout: 30s"]
    lines += [f"  {line}" for line in placement.splitlines()]
    if disks:
        lines.append("  disks:")
        for disk in disks:
            disk_name, size = disk.split()
            lines += [f"    - name: {disk_name}", "      pool: default", f"      size: {size}"]
    lines += ["  networks:", "    - network: default"]
    return "\n".join(lines) + "\n"


@dataclass
class VMDoc:
    name: str
    variant: int
    file: str  # relative path of its manifest file
    placement: str  # its spec lines
    memory: str | None = None


def plan_vms(hosts: int, per_host: int, racks: int) -> list[VMDoc]:
    """``hosts * per_host`` VMs: about 30% pinned (``spec.host``; at least ``VARIANTS`` per
    host, in one multi-document file per host), the rest selected by rack
    (``spec.hostSelector``; one file each, in team folders). Variant = index mod VARIANTS."""
    pinned_each = max(VARIANTS, round(per_host * 0.3))
    out = []
    for i in range(hosts * per_host):
        name = vm_name(i)
        variant = i % VARIANTS
        if i < hosts * pinned_each:
            host = i // pinned_each
            out.append(VMDoc(name, variant, f"pinned/{host_name(host)}.yaml",
                             f"host: {host_name(host)}"))
        else:
            rack = f"r{i % racks:02d}"
            out.append(VMDoc(name, variant, f"teams/team-{i % 10:02d}/{name}.yaml",
                             f"hostSelector:\n  rack: {rack}"))
    return out


def write_repo(repo: Path, nodes: Path, hosts: int, racks: int, vms: list[VMDoc]) -> None:
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "hosts").mkdir(parents=True)
    nodes.mkdir(parents=True, exist_ok=True)
    node = NODE.read_text()
    for i in range(hosts):
        (repo / "hosts" / f"{host_name(i)}.yaml").write_text(host_document(i, racks, nodes))
        (nodes / f"{host_name(i)}.xml").write_text(node)
    files: dict[str, list[str]] = {}
    for vm in vms:
        files.setdefault(vm.file, []).append(
            vm_document(vm.name, vm.variant, vm.placement, vm.memory))
    for rel, docs in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("---\n".join(docs))


def placement_of(repo: Path) -> dict[str, list[str]]:
    """Host -> the VMs the repository places on it (the product's own placement)."""
    from reconciler.adapters.manifests import load_desired
    from reconciler.core.placement import place

    inputs = load_desired(repo)
    if inputs.problems:
        raise SystemExit(f"the generated repository has problems: {inputs.problems[:3]}")
    out: dict[str, list[str]] = {h.spec.name: [] for h in inputs.hosts}
    for name, placed in sorted(place(inputs.vms, inputs.hosts).items()):
        if placed.host is None:
            raise SystemExit(f"{name} is not placed: {placed.reason}")
        out[placed.host].append(name)
    return out


def real_snapshot(repo: Path, host: str, work: Path) -> dict[str, object]:
    """``host``'s share of ``repo`` applied to test:///default (in this process: its state
    lives as long as the process), read back as ``reconciler snapshot`` does."""
    import libvirt
    from click.testing import CliRunner

    from reconciler.adapters import snapshot
    from reconciler.adapters.libvirt import Libvirt
    from reconciler.adapters.libvirt.snapshot import take
    from reconciler.shells.cli import main as cli

    conn = libvirt.open("test:///default")
    pool = conn.storagePoolDefineXML(  # the pool test-node.xml has, as tests/gitops/ci does
        "<pool type='dir'><name>default</name><target><path>/var/lib/libvirt/images</path>"
        "</target></pool>")
    pool.create()
    config = work / "apply-config.yaml"
    config.write_text(f"host: {host}\n")
    result = CliRunner().invoke(cli, ["apply", "--yes", "--connect", "test:///default",
                                      "--config", str(config), "--state-dir",
                                      str(work / "apply-state"), str(repo)],
                                env={"RECONCILER_CACHE_DIR": "", "RECONCILER_INSTANCE": INSTANCE,
                                     "RECONCILER_LOCK_DIR": str(work / "locks")})
    if result.exit_code != 0:
        raise SystemExit(f"apply to the test driver failed ({result.exit_code}):\n"
                         f"{result.output[-3000:]}")
    hv = Libvirt("test:///default", readonly=True)
    doc = snapshot.to_json(take(hv, ["/var/lib/libvirt/images"]))
    hv.close()
    conn.close()
    return doc


MARK_MANIFEST = re.compile(r"<reconciler:manifest>[^<]*</reconciler:manifest>")
MAC = re.compile(r"52:54:00(?::[0-9a-f]{2}){3}")


def mac_of(name: str, nic: int) -> str:
    digest = hashlib.sha256(f"{name}/{nic}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def derive(template: dict[str, object], placed: list[str], docs: dict[str, VMDoc],
           host: str, nodes: Path) -> dict[str, object]:
    """``host``'s snapshot: the template host's other (unmanaged) domains, networks and pools,
    and for each VM placed on ``host`` a copy of a template domain of its variant, renamed
    (name, UUID, MACs, volumes, the mark's manifest file), with its volumes."""
    domains: list[dict[str, object]] = template["domains"]  # type: ignore[assignment]
    volumes: list[dict[str, object]] = template["volumes"]  # type: ignore[assignment]
    by_name = {d["name"]: d for d in domains}
    template_vms = {name: docs[name] for name in by_name if name in docs}
    by_variant: dict[int, str] = {}
    for name, doc in sorted(template_vms.items()):
        by_variant.setdefault(doc.variant, name)
    if len(by_variant) < VARIANTS:
        raise SystemExit(f"the template host lacks a VM of each shape: {sorted(by_variant)}")
    out = copy.deepcopy(template)
    out_domains = [d for d in out["domains"] if d["name"] not in docs]  # type: ignore[attr-defined]
    out_volumes = [v for v in out["volumes"]  # type: ignore[attr-defined]
                   if not any(str(v["name"]).startswith(n + "-") for n in template_vms)]
    pool_volumes: dict[str, list[str]] = {}
    for index, name in enumerate(placed):
        doc = docs[name]
        source = by_variant[doc.variant]
        dom = dict(by_name[source])
        macs = sorted(set(MAC.findall(str(dom["inactive_xml"]))))
        new_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fleet-bench/{name}"))

        def rename(xml: object, source: str = source, macs: list[str] = macs,
                   new_uuid: str = new_uuid, dom: dict[str, object] = dom,
                   name: str = name, file: str = doc.file) -> object:
            if xml is None:
                return None
            text = str(xml).replace(source, name).replace(str(dom["uuid"]), new_uuid)
            for n, mac in enumerate(macs):
                text = text.replace(mac, mac_of(name, n))
            return MARK_MANIFEST.sub(f"<reconciler:manifest>{file}</reconciler:manifest>", text)

        dom["inactive_xml"] = rename(dom["inactive_xml"])
        dom["live_xml"] = rename(dom["live_xml"])
        dom.update(name=name, uuid=new_uuid, id=(index + 2) if dom["id"] is not None else None)
        out_domains.append(dom)
        for vol in volumes:
            if str(vol["name"]).startswith(source + "-"):
                copied = dict(vol, name=str(vol["name"]).replace(source, name),
                              xml=str(vol["xml"]).replace(source, name))
                out_volumes.append(copied)
                pool_volumes.setdefault(str(vol["pool"]), []).append(str(copied["name"]))
    for pool in out["pools"]:  # type: ignore[attr-defined]
        kept = [v for v in pool["volumes"]
                if not any(v.startswith(n + "-") for n in template_vms)]
        pool["volumes"] = kept + pool_volumes.get(pool["name"], [])
    out.update(domains=out_domains, volumes=out_volumes, hostname=host, taken=TAKEN,
               uri=f"test://{nodes / (host + '.xml')}")
    return out


def generate(work: Path, hosts: int, vms: list[VMDoc], *, gz: bool = False) -> Fleet:
    """The repository, then the snapshots (each host holding what the repository places on
    it, applied), then the edits that give the plan a little to do: new VMs (creates), a few
    memory changes (updates) and a few VMs pinned to another host (moves)."""
    racks = max(1, hosts // 10)
    repo, nodes, snaps = work / "repo", work / "nodes", work / "snapshots"
    docs = {vm.name: vm for vm in vms}
    write_repo(repo, nodes, hosts, racks, vms)
    placed = placement_of(repo)
    first = host_name(0)
    template = real_snapshot(repo, first, work)
    snaps.mkdir()
    fleet = Fleet(repo, snaps, hosts, len(vms), placed)
    for host, names in placed.items():
        doc = template if host == first else derive(template, names, docs, host, nodes)
        if host == first:
            doc = dict(doc, hostname=host, taken=TAKEN, uri=f"test://{nodes / (host + '.xml')}")
        data = json.dumps(doc, separators=(",", ":")).encode()
        path = snaps / f"{host}.snapshot"
        if gz:
            data, path = gzip.compress(data, mtime=0), snaps / f"{host}.snapshot.gz"
        path.write_bytes(data)
        fleet.snapshot_bytes += len(data)
    return fleet


def edit(fleet: Fleet, vms: list[VMDoc], nodes: Path) -> None:
    """The repository after a few merges: about 0.2% new VMs (at least 2), 5 (or 2) stopped
    VMs given more memory, 3 (or 2) pinned VMs pinned to another host."""
    hosts, racks = fleet.hosts, max(1, fleet.hosts // 10)
    small = len(vms) < 1000
    new = max(2, len(vms) // 500)
    for i in range(len(vms), len(vms) + new):
        vms.append(VMDoc(vm_name(i), i % VARIANTS, f"teams/new/{vm_name(i)}.yaml",
                         f"hostSelector:\n  rack: r{i % racks:02d}"))
    updates = [vm for vm in vms if vm.variant == 3 and vm.placement.startswith("hostSelector")]
    for vm in updates[:2 if small else 5]:
        vm.memory = "128MiB"
    pinned = [vm for vm in vms if vm.placement.startswith("host:")]
    movers = [pinned[0], pinned[VARIANTS + 1]] if small else [pinned[0], pinned[1], pinned[35]]
    for vm in movers:  # a running and a stopped VM (variants 0 and 1), and one more
        host = int(vm.placement.split("-")[1])
        vm.placement = f"host: {host_name((host + 1) % hosts)}"
    write_repo(fleet.repo, nodes, hosts, racks, vms)
    fleet.vms = len(vms)
    fleet.creates, fleet.updates, fleet.moves = new, 2 if small else 5, len(movers)


def git_commit(repo: Path) -> None:
    """Make the repository a git repository with one commit, as a checkout in CI is."""
    if shutil.which("git") is None:
        return
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.org"}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "fleet"]):
        subprocess.run(["git", *cmd], cwd=repo, env=env, check=True, capture_output=True)


# --- measuring ------------------------------------------------------------------------------


def run_timed(cmd: Sequence[str], env: dict[str, str]) -> Run:
    """Run ``cmd``; its wall time and its own CPU time (``wait4``)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(wall, usage.ru_utime + usage.ru_stime, proc.returncode,
                   out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def child_env(work: Path, cache: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [
                   os.environ.get("PYTHONPATH", "")])]),
               RECONCILER_INSTANCE=INSTANCE, RECONCILER_CACHE_DIR=str(cache or ""),
               RECONCILER_LOCK_DIR=str(work / "locks"), XDG_STATE_HOME=str(work / "state"),
               PYTHONPYCACHEPREFIX=str(work / "pycache"), NO_COLOR="1")
    return env


def pinned(cmd: list[str], cores: int | None) -> list[str]:
    if not cores:
        return cmd
    return ["taskset", "-c", ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:cores]),
            *cmd]


def fleet_cmd(fleet: Fleet, config: Path, *extra: str, cli: str = CLI) -> list[str]:
    return [sys.executable, "-c", cli, "plan", "--fleet", "--snapshots", str(fleet.snapshots),
            "--config", str(config), *extra, str(fleet.repo)]


def check_host_plan(fleet: Fleet, work: Path, host: str, repo: Path) -> None:
    """``plan --snapshot`` of one host against the repository its snapshot was made from:
    it must say "No changes" (the snapshot is plausible)."""
    config = work / f"check-{host}.yaml"
    config.write_text(f"host: {host}\n")
    suffix = ".snapshot.gz" if (fleet.snapshots / f"{host}.snapshot.gz").exists() else ".snapshot"
    run = run_timed([sys.executable, "-c", CLI, "plan", "--snapshot",
                     str(fleet.snapshots / f"{host}{suffix}"), "--config", str(config),
                     str(repo)], child_env(work, work / "check-cache"))
    if run.code != 0 or "No changes." not in run.stdout:
        raise SystemExit(f"the generated snapshot of {host} does not plan as 'No changes' "
                         f"(exit {run.code}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")


SUMMARY = re.compile(r"Fleet: (\d+) hosts?(?: \((\d+) not planned\))?: (\d+) to create, "
                     r"(\d+) to update, (\d+) to destroy, (\d+) to move, (\d+) blocked\.")


def check_fleet_plan(run: Run, fleet: Fleet) -> str:
    """The fleet plan's summary line; the benchmark stops unless every host was planned and
    the plan holds what the edits made (creates, updates, moves, nothing destroyed)."""
    found = SUMMARY.search(run.stdout)
    if run.code not in (0, 2) or found is None:
        raise SystemExit(f"plan --fleet failed (exit {run.code}):\n{run.stdout[-2000:]}"
                         f"{run.stderr[-2000:]}")
    hosts, missing, create, update, destroy, move, _ = (int(g or 0) for g in found.groups())
    expected = (fleet.hosts, 0, fleet.creates, fleet.updates, 0, fleet.moves)
    if (hosts, missing, create, update, destroy, move) != expected:
        raise SystemExit(f"unexpected fleet plan: {found.group(0)} (expected hosts, not "
                         f"planned, create, update, destroy, move = {expected})\n"
                         f"{run.stderr[-2000:]}")
    return found.group(0)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def cores_text() -> str:
    return (f"os.cpu_count()={os.cpu_count()}, "
            f"sched_getaffinity={len(os.sched_getaffinity(0))}")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--vms", type=int, default=100, help="VMs per host (default 100)")
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="10 hosts x 10 VMs, 1 round: checks that the benchmark runs")
    ap.add_argument("--cores", type=int, default=None,
                    help="run each timed process under taskset on this many CPUs (2: the "
                         "target's machine)")
    ap.add_argument("--gzip", action="store_true", help="write NAME.snapshot.gz files")
    ap.add_argument("--threads", action="store_true",
                    help="also time the plan made in one process (threads), as with one CPU")
    ap.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    ap.add_argument("--keep", action="store_true",
                    help="keep the generated folder (printed) for profiling")
    ap.add_argument("--profile", type=Path, default=None,
                    help="also run one cold fleet plan under cProfile, write its stats here "
                         "and print the top --top functions")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    if args.quick:
        args.hosts, args.vms, args.repeat = 10, 10, 1
    if args.hosts < 2 or args.vms < 2 * VARIANTS or args.repeat < 1:
        ap.error("--hosts >= 2, --vms >= 8, --repeat >= 1")
    if args.cores is not None and shutil.which("taskset") is None:
        ap.error("--cores needs taskset")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ["RECONCILER_INSTANCE"] = INSTANCE
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    try:
        return bench(args, work)
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, work: Path) -> int:
    print(f"fleet: {args.hosts} hosts x {args.vms} VMs from snapshots; cores: {cores_text()}"
          + (f"; timed processes on {args.cores} CPUs (taskset)" if args.cores else ""))
    start = time.perf_counter()
    vms = plan_vms(args.hosts, args.vms, max(1, args.hosts // 10))
    fleet = generate(work, args.hosts, vms, gz=args.gzip)
    applied = work / "repo-applied"
    shutil.copytree(fleet.repo, applied)
    check_host_plan(fleet, work, host_name(0), applied)
    check_host_plan(fleet, work, host_name(args.hosts - 1), applied)
    edit(fleet, vms, work / "nodes")
    git_commit(fleet.repo)
    config = work / "config.yaml"
    config.write_text("# empty: the defaults (no /etc/reconciler)\n")
    counts = [len(v) for v in fleet.placed.values()]
    print(f"generated in {time.perf_counter() - start:.1f}s: {fleet.vms} VMs "
          f"({fleet.creates} new), VMs per host {min(counts)}-{max(counts)} "
          f"(median {median(counts):g}), snapshots {fleet.snapshot_bytes / 2**20:.1f} MiB; "
          f"{host_name(0)} planned from its own snapshot, and {host_name(args.hosts - 1)} from "
          "its derived one: No changes")

    raw_cmd = pinned([sys.executable, "-c", RAW_SCRIPT, str(fleet.snapshots)], args.cores)
    warm_cache = work / "cache-warm"
    # warm-up: compiles the bytecode into the temporary prefix, fills the warm cache
    for cmd, env in ((raw_cmd, child_env(work, None)),
                     (pinned(fleet_cmd(fleet, config), args.cores), child_env(work, warm_cache))):
        run = run_timed(cmd, env)
        if run.code not in (0, 2):
            raise SystemExit(f"warm-up failed ({run.code}): {run.stderr[-2000:]}")
    runs: dict[str, list[Run]] = {"raw": [], "cold": [], "warm": [], "threads": []}
    summary = ""
    print(f"\n{'round':>5}  {'raw read':>9}  {'plan (cold cache)':>17}  {'ratio':>6}  "
          f"{'plan (warm cache)':>17}  {'ratio':>6}"
          + (f"  {'cold, threads':>13}  {'ratio':>6}" if args.threads else ""))
    for n in range(args.repeat):
        raw = run_timed(raw_cmd, child_env(work, None))
        if raw.code != 0 or int(raw.stdout.strip() or 0) < fleet.vms - fleet.creates:
            raise SystemExit(f"raw read failed ({raw.code}): {raw.stderr[-2000:]}")
        cold_cache = work / f"cache-cold-{n}"
        cold = run_timed(pinned(fleet_cmd(fleet, config), args.cores),
                         child_env(work, cold_cache))
        summary = check_fleet_plan(cold, fleet)
        warm = run_timed(pinned(fleet_cmd(fleet, config), args.cores),
                         child_env(work, warm_cache))
        check_fleet_plan(warm, fleet)
        shutil.rmtree(cold_cache, ignore_errors=True)
        for key, run in (("raw", raw), ("cold", cold), ("warm", warm)):
            runs[key].append(run)
        line = (f"{n + 1:>5}  {raw.wall:>8.3f}s  {cold.wall:>16.3f}s  "
                f"{cold.wall / raw.wall:>5.1f}x  {warm.wall:>16.3f}s  "
                f"{warm.wall / raw.wall:>5.1f}x")
        if args.threads:
            threads = run_timed(pinned(fleet_cmd(fleet, config, cli=THREADS_CLI), args.cores),
                                child_env(work, cold_cache))
            check_fleet_plan(threads, fleet)
            shutil.rmtree(cold_cache, ignore_errors=True)
            runs["threads"].append(threads)
            line += f"  {threads.wall:>12.3f}s  {threads.wall / raw.wall:>5.1f}x"
        print(line)

    raw_s = median([r.wall for r in runs["raw"]])
    print(f"\nplan: {summary}")
    print(f"{'':24}{'median':>9}{'min':>9}{'cpu':>9}{'per host':>10}{'ratio':>8}")
    for key, label in (("raw", "raw read (json.load)"), ("cold", "plan (cold cache)"),
                       ("warm", "plan (warm cache)"), ("threads", "plan (cold, threads)")):
        if not runs[key]:
            continue
        walls = [r.wall for r in runs[key]]
        wall = median(walls)
        print(f"{label:<24}{wall:>8.3f}s{min(walls):>8.3f}s"
              f"{median([r.cpu for r in runs[key]]):>8.3f}s"
              f"{wall / args.hosts * 1000:>8.1f}ms{wall / raw_s:>7.1f}x")
    cold_s = median([r.wall for r in runs["cold"]])
    warm_s = median([r.wall for r in runs["warm"]])
    met = cold_s < TARGET_SECONDS
    full = args.hosts * args.vms >= 100 * 100
    cpus = args.cores or len(os.sched_getaffinity(0))
    on = f"{cpus} CPU{'' if cpus == 1 else 's'}" + (" (taskset)" if args.cores else "")
    print(f"\ntotal (cold cache): {cold_s:.3f}s, {cold_s / args.hosts * 1000:.1f} ms per host, "
          f"{cold_s / raw_s:.1f}x the raw read ({raw_s:.3f}s); warm cache {warm_s:.3f}s "
          f"({warm_s / raw_s:.1f}x)")
    print(f"target: {args.hosts} hosts x {args.vms} VMs in < {TARGET_SECONDS:g}s on "
          f"{TARGET_CORES} cores: {'MET' if met else 'NOT MET'} on {on}"
          + ("" if full else " (a smaller fleet than the target's 100 x 100)"))
    print(f"host load average {load_average()}")
    if args.profile is not None:
        profile(fleet, config, work, args.profile, args.top)
    return 1 if args.check and not met else 0


def profile(fleet: Fleet, config: Path, work: Path, out: Path, top: int) -> None:
    cmd = [sys.executable, "-c", PROFILE_SCRIPT, str(out), *fleet_cmd(fleet, config)[3:]]
    run = run_timed(cmd, child_env(work, work / "cache-profile"))
    if not out.exists():
        raise SystemExit(f"profile failed ({run.code}): {run.stderr[-2000:]}")
    print(f"\ncProfile of one cold fleet plan, its hosts one after the other in one process "
          f"({run.wall:.2f}s under the profiler), written to {out}:")
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(top)


if __name__ == "__main__":
    sys.exit(main())
