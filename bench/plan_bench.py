#!/usr/bin/env python3
"""Benchmark: `reconciler plan` over N manifests against N defined domains on the real libvirtd,
beside a raw libvirt-python script that lists the domains and reads each one's XML.

Target (from the issue): the whole `reconciler plan` process within 1.5x the raw read.
These are figures, not a test: the script exits 0 whether the target is met or not, and 1 only
when the benchmark itself could not run (setup failed, plan was not "No changes", ...).

Hermetic: every domain and volume it creates is named ``bench-<hex>-*``, owned by its own
reconciler instance (RECONCILER_INSTANCE), with a temporary config, state directory and manifest
directory; all of it is removed at the end (also on Ctrl-C / SIGTERM) unless ``--keep``.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import libvirt

TARGET_RATIO = 1.5
PREFIX_PATTERN = re.compile(r"bench-[0-9a-f]{6}-")
MULTI_DOC_FILES = 3  # "a few files with many --- documents"
MULTI_DOC_SHARE = 0.3  # of all VMs; the rest are one file per VM in team folders
TEAMS = 10

# The baseline: what any tool has to do at least. Same interpreter, separate process.
RAW_SCRIPT = """\
import sys
import libvirt
conn = libvirt.openReadOnly(sys.argv[1])
n = 0
for dom in conn.listAllDomains(0):
    dom.XMLDesc(0)
    n += 1
conn.close()
print(n)
"""

# The reconciler's own phases, timed in a fresh (cold) process like the CLI's, by importing the
# pipeline's modules directly. Prints one JSON object of seconds per phase.
PHASES_SCRIPT = """\
import json, sys, time
t = [time.perf_counter()]
from pathlib import Path
import reconciler.shells.cli  # noqa: F401  (what the console script imports)
from reconciler.core.diff import vm as diff
from reconciler.core.diff.guards import Guards
from reconciler import pipeline
from reconciler.core import render
from reconciler.adapters.libvirt import Libvirt
from reconciler.adapters import manifests as loader
from reconciler.core.validate.checks import validate
t.append(time.perf_counter())
uri, folder, instance = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
documents, problems = loader.load_tree(folder)
t.append(time.perf_counter())
inputs = validate(documents, problems)
t.append(time.perf_counter())
hv = Libvirt(uri, readonly=True)
t.append(time.perf_counter())
state = pipeline.read_state(hv, instance, inputs)  # no cache: the cold path
live = state.vms
t.append(time.perf_counter())
hv.close()
plan = diff.plan(inputs.vms, live, Guards(problems=len(inputs.problems)), read=state.read)
t.append(time.perf_counter())
render.plan_json(plan, inputs.problems)
text = render.plan_text(plan)
t.append(time.perf_counter())
names = ["imports", "load manifests (YAML)", "validate (schema, model)", "connect",
         "read live state", "diff", "render (text + JSON)"]
out = {n: b - a for n, a, b in zip(names, t, t[1:])}
out["_vms"] = len(inputs.vms)
out["_domains"] = len(live)
out["_no_changes"] = text.startswith("No changes")
out["_plan"] = text[:2000]
print(json.dumps(out))
"""


class BenchError(Exception):
    """The benchmark could not run: its figures would mean nothing."""


# --- running and timing child processes ---------------------------------------------------------


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds of the child
    rss_kib: int  # max resident set size of the child
    code: int
    stdout: str
    stderr: str


def run_timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> Run:
    """Run ``cmd``; its wall time, and its own CPU time and max RSS from wait4()."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode,
                   out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


# --- manifests ----------------------------------------------------------------------------------


def vm_document(name: str, index: int, mac_base: str) -> str:
    """One VM manifest: 1 vcpu (max 2), 64MiB, a 16MiB disk in `default`, a NIC on `default`,
    stopped. Optional fields vary with the index, as in a real repository."""
    lines = [f"# {name}: generated by bench/plan_bench.py"] if index % 4 == 0 else []
    lines += [
        "apiVersion: reconciler/v1",
        "kind: VirtualMachine",
        "metadata:",
        f"  name: {name}",
    ]
    tier = ("web", "db", "cache", "batch", "ci")[index % 5]
    if index % 3 == 0:
        lines += ["  labels:", f"    tier: {tier}", f"    team: team-{index % TEAMS:02d}",
                  "    env: bench"]
    elif index % 3 == 1:
        lines.append(f"  labels: {{tier: {tier}}}")
    if index % 10 == 0:
        lines.append("  annotations: {owner: bench}")
    lines += [
        "spec:",
        "  vcpus: 1",
        "  maxVcpus: 2",
        "  memory: 64MiB",
        "  state: stopped",
    ]
    if index % 2 == 0:
        lines.append("  autostart: false")
    if index % 5 == 0:
        lines.append("  updatePolicy: restart")
    if index % 4 == 1:
        lines.append(f"  shutdownTimeout: {('30s', '2m', '1h')[index % 3]}")
    lines += [
        "  disks:",
        "    - name: root",
        "      size: 16MiB",
        "      pool: default",
    ]
    if index % 7 == 0:
        lines.append("      format: raw")
    if index % 6 == 0:
        lines.append("      reclaim: retain")
    lines += ["  networks:", "    - network: default"]
    if index % 3 == 0 and index < 1 << 16:
        lines.append(f'      mac: "{mac_base}:{index >> 8:02x}:{index & 0xFF:02x}"')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ManifestSet:
    folder: Path
    names: tuple[str, ...]
    files: int
    multi_doc_files: int
    multi_doc_vms: int


def write_manifests(folder: Path, prefix: str, count: int) -> ManifestSet:
    """``count`` VMs: a share in a few multi-document files, the rest one file each in team
    folders (some `.yml`)."""
    hexpart = prefix.split("-")[1]
    mac_base = f"52:54:{hexpart[0:2]}:{hexpart[2:4]}"
    names = tuple(f"{prefix}{i:04d}" for i in range(count))
    in_multi = int(count * MULTI_DOC_SHARE) if count >= 10 else 0
    multi_files = min(MULTI_DOC_FILES, in_multi)
    files = 0
    for f in range(multi_files):
        chunk = range(f * in_multi // multi_files, (f + 1) * in_multi // multi_files)
        docs = [vm_document(names[i], i, mac_base) for i in chunk]
        path = folder / "fleet" / f"batch-{f + 1}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Batch {f + 1}: {len(docs)} VMs\n---\n" + "---\n".join(docs))
        files += 1
    for i in range(in_multi, count):
        team = folder / "teams" / f"team-{i % TEAMS:02d}"
        team.mkdir(parents=True, exist_ok=True)
        suffix = ".yml" if i % 9 == 0 else ".yaml"
        (team / f"{names[i]}{suffix}").write_text(vm_document(names[i], i, mac_base))
        files += 1
    return ManifestSet(folder, names, files, multi_files, in_multi)


# --- the host: setup checks and teardown --------------------------------------------------------


def check_host(uri: str, pool: str) -> libvirt.virConnect:
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise BenchError(f"cannot connect to {uri}: {exc} (run scripts/testbed-setup)") from exc
    try:
        storage = conn.storagePoolLookupByName(pool)
    except libvirt.libvirtError as exc:
        raise BenchError(f"storage pool {pool!r} not found (run scripts/testbed-setup)") from exc
    if not storage.isActive():
        raise BenchError(f"storage pool {pool!r} is not active (run scripts/testbed-setup)")
    return conn


def teardown(uri: str, prefix: str, pool: str) -> tuple[int, int, list[str]]:
    """Undefine every domain named ``prefix*`` and delete every volume named ``prefix*`` in
    ``pool``. Nothing else is touched. Returns (domains, volumes, errors)."""
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise BenchError(f"refusing to clean up with prefix {prefix!r}: expected bench-<6 hex>-")
    conn = libvirt.open(uri)
    errors: list[str] = []
    domains = volumes = 0
    flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
             | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    try:
        for dom in conn.listAllDomains(0):
            if not dom.name().startswith(prefix):
                continue
            try:
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefineFlags(flags)
                domains += 1
            except libvirt.libvirtError as exc:
                errors.append(f"domain {dom.name()}: {exc}")
        try:
            storage = conn.storagePoolLookupByName(pool)
            storage.refresh(0)
            for vol in storage.listAllVolumes(0):
                if not vol.name().startswith(prefix):
                    continue
                try:
                    vol.delete(0)
                    volumes += 1
                except libvirt.libvirtError as exc:
                    errors.append(f"volume {vol.name()}: {exc}")
        except libvirt.libvirtError as exc:
            errors.append(f"pool {pool}: {exc}")
    finally:
        conn.close()
    return domains, volumes, errors


def count_prefixed(uri: str, prefix: str) -> tuple[int, int]:
    """(domains named prefix*, domains on the host in all)."""
    conn = libvirt.openReadOnly(uri)
    try:
        names = [d.name() for d in conn.listAllDomains(0)]
    finally:
        conn.close()
    return sum(1 for n in names if n.startswith(prefix)), len(names)


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt (like Ctrl-C), so teardown runs."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """A second Ctrl-C must not leave teardown half done."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Context:
    uri: str
    prefix: str
    instance: str
    manifests: ManifestSet
    config: Path
    state_dir: Path
    reconciler: str
    env: dict[str, str]

    def plan_cmd(self) -> list[str]:
        return [self.reconciler, "plan", "--connect", self.uri, "--config", str(self.config),
                str(self.manifests.folder)]

    def raw_cmd(self) -> list[str]:
        return [sys.executable, "-c", RAW_SCRIPT, self.uri]


def setup(ctx: Context, parallel: int) -> float:
    """Define every VM with `reconciler apply` itself. Returns its wall time."""
    cmd = [ctx.reconciler, "apply", "--yes", "--connect", ctx.uri, "--config", str(ctx.config),
           "--state-dir", str(ctx.state_dir), "--parallel", str(parallel),
           str(ctx.manifests.folder)]
    print(f"setup: reconciler apply of {len(ctx.manifests.names)} VMs ...", flush=True)
    run = run_timed(cmd, ctx.env)
    if run.code != 0:
        raise BenchError(f"`reconciler apply` exited {run.code}:\n{tail(run.stderr or run.stdout)}")
    defined, _ = count_prefixed(ctx.uri, ctx.prefix)
    if defined != len(ctx.manifests.names):
        raise BenchError(f"apply exited 0 but {defined} of {len(ctx.manifests.names)} domains "
                         "are defined")
    return run.wall


def check_plan(run: Run) -> None:
    if run.code != 0 or not run.stdout.startswith("No changes"):
        raise BenchError(f"`reconciler plan` exited {run.code} and did not say 'No changes':\n"
                         f"{tail(run.stdout)}\n{tail(run.stderr)}")


def check_raw(run: Run) -> None:
    if run.code != 0:
        raise BenchError(f"the raw baseline exited {run.code}:\n{tail(run.stderr)}")


SIDES = ("raw read", "plan (cache)", "plan (1 file edited)", "plan (no cache)")


def measure(ctx: Context, repeat: int) -> dict[str, list[Run]]:
    """One discarded warm-up of each (it also fills the plan cache), then ``repeat`` rounds of
    the raw read; `plan` with its cache (the default) over the same manifests; `plan` after one
    VM's file was edited (a comment added: that file is parsed again, as after a merge that
    touched it); and `plan` without the cache (a first plan on a fresh machine)."""
    print("warm-up ...", flush=True)
    cold_env = dict(ctx.env, RECONCILER_CACHE_DIR="")
    check_raw(run_timed(ctx.raw_cmd(), ctx.env))
    check_plan(run_timed(ctx.plan_cmd(), ctx.env))
    check_plan(run_timed(ctx.plan_cmd(), cold_env))
    singles = sorted((ctx.manifests.folder / "teams").rglob("*.y*ml"))
    runs: dict[str, list[Run]] = {side: [] for side in SIDES}
    print(f"{'run':>4}  " + "  ".join(f"{side:>{max(len(side), 9)}}  {'ratio':>5}"
                                       for side in SIDES[1:]) + f"  {'raw read':>9}")
    for i in range(repeat):
        raw = run_timed(ctx.raw_cmd(), ctx.env)
        check_raw(raw)
        plan = run_timed(ctx.plan_cmd(), ctx.env)
        check_plan(plan)
        if singles:
            with singles[i % len(singles)].open("a") as file:
                file.write(f"# edited ({i})\n")
        edited = run_timed(ctx.plan_cmd(), ctx.env)
        check_plan(edited)
        cold = run_timed(ctx.plan_cmd(), cold_env)
        check_plan(cold)
        for side, run in zip(SIDES, (raw, plan, edited, cold), strict=True):
            runs[side].append(run)
        print(f"{i + 1:>4}  " + "  ".join(
            f"{run.wall:>{max(len(side), 9) - 1}.3f}s  {run.wall / raw.wall:>4.2f}x"
            for side, run in zip(SIDES[1:], (plan, edited, cold), strict=True))
            + f"  {raw.wall:>8.3f}s", flush=True)
    return runs


def phases(ctx: Context, repeat: int) -> dict[str, float]:
    """Median seconds of each phase of the pipeline, each repetition in a fresh process."""
    samples: dict[str, list[float]] = {}
    cmd = [sys.executable, "-c", PHASES_SCRIPT, ctx.uri, str(ctx.manifests.folder), ctx.instance]
    for _ in range(repeat):
        run = run_timed(cmd, ctx.env)
        if run.code != 0:
            raise BenchError(f"the phase timing script exited {run.code}:\n{tail(run.stderr)}")
        data = json.loads(run.stdout.strip().splitlines()[-1])
        if not data.pop("_no_changes"):
            raise BenchError(f"the phase timing script did not get an empty plan:\n"
                             f"{tail(data['_plan'])}")
        data.pop("_plan")
        data.pop("_vms")
        data.pop("_domains")
        for name, seconds in data.items():
            samples.setdefault(name, []).append(seconds)
        samples.setdefault("interpreter start + exit (rest)", []).append(
            run.wall - sum(data.values()))
    return {name: statistics.median(values) for name, values in samples.items()}


def startup_costs(ctx: Context, repeat: int) -> dict[str, float]:
    """Wall time of a process that only starts Python and imports (median)."""
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import libvirt'": [sys.executable, "-c", "import libvirt"],
        "reconciler --version": [ctx.reconciler, "--version"],
    }
    return {label: statistics.median(run_timed(cmd, ctx.env).wall for _ in range(repeat))
            for label, cmd in cmds.items()}


def profile(ctx: Context, out: Path, top: int) -> None:
    """One `reconciler plan` under cProfile; the top functions by own time and by cumulative."""
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "reconciler.shells.cli", "plan",
           "--connect", ctx.uri, "--config", str(ctx.config), str(ctx.manifests.folder)]
    run = run_timed(cmd, ctx.env)
    check_plan(run)
    print(f"\nprofile of one `reconciler plan` (cProfile, {run.wall:.3f}s wall with profiling "
          f"overhead) saved to {out}")
    for key in ("tottime", "cumulative"):
        print(f"--- top {top} by {key} ---", flush=True)
        stats = pstats.Stats(str(out), stream=sys.stdout)
        stats.strip_dirs().sort_stats(key).print_stats(top)


# --- reporting ----------------------------------------------------------------------------------


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def report(runs: dict[str, list[Run]]) -> None:
    raws = runs[SIDES[0]]
    raw_med = statistics.median(r.wall for r in raws)
    print()
    print(f"{'':<22} {'median':>8} {'min':>8} {'cpu (median)':>13} {'max RSS':>9}")
    for side in SIDES:
        print(f"{side:<22} {statistics.median(r.wall for r in runs[side]):>7.3f}s "
              f"{min(r.wall for r in runs[side]):>7.3f}s "
              f"{statistics.median(r.cpu for r in runs[side]):>12.3f}s "
              f"{mib(max(r.rss_kib for r in runs[side])):>9}")
    print()
    for side in SIDES[1:]:
        ratio = statistics.median(r.wall for r in runs[side]) / raw_med
        best = min(r.wall for r in runs[side]) / min(r.wall for r in raws)
        cpu = (statistics.median(r.cpu for r in runs[side])
               / max(statistics.median(r.cpu for r in raws), 1e-9))
        verdict = "MET" if ratio <= TARGET_RATIO else "NOT MET"
        print(f"{side}: ratio of medians {ratio:.2f}x (of minimums: {best:.2f}x; of CPU times: "
              f"{cpu:.2f}x); target <= {TARGET_RATIO}x: {verdict}"
              + ("" if ratio <= TARGET_RATIO else
                 f" (would need <= {raw_med * TARGET_RATIO:.3f}s)"))
    print("(the cache is on by default; \"no cache\" is a first plan on a machine, e.g. a fresh "
          "CI runner)")


def print_breakdown(title: str, figures: dict[str, float], *, total: bool = True) -> None:
    print(f"\n{title}")
    for name, seconds in figures.items():
        print(f"  {name:<32} {seconds:>7.3f}s")
    if total:
        print(f"  {'total':<32} {sum(figures.values()):>7.3f}s")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time `reconciler plan` against a raw libvirt read of the same domains.")
    parser.add_argument("--count", type=int, default=1000, help="VMs (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed pairs (default 5)")
    parser.add_argument("--keep", action="store_true",
                        help="skip teardown: leave the domains, volumes and manifests for "
                             "profiling (clean up later with --cleanup PREFIX)")
    parser.add_argument("--cleanup", metavar="PREFIX",
                        help="only remove what an earlier --keep run left (bench-<hex>-)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="also run one plan under cProfile, save the stats to FILE and "
                             "print the top functions")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--connect", default="qemu:///system", help="libvirt URI")
    parser.add_argument("--pool", default="default", help="storage pool of the VM disks")
    parser.add_argument("--parallel", type=int, default=8, help="apply's --parallel for setup")
    parser.add_argument("--reconciler", default=None,
                        help="the reconciler console script (default: the one next to this "
                             "Python, else on PATH)")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 9999:
        parser.error("--count must be between 1 and 9999")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def find_reconciler(option: str | None) -> str:
    if option:
        return option
    beside = Path(sys.executable).parent / "reconciler"
    if beside.exists():
        return str(beside)
    found = shutil.which("reconciler")
    if not found:
        raise BenchError("no `reconciler` console script: activate the venv or pass --reconciler")
    return found


def say(text: str, *, err: bool = False) -> None:
    """Print, but never let a closed stdout (`| head`) stop the teardown."""
    with suppress(OSError):
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


def cleanup(uri: str, prefix: str, pool: str) -> bool:
    """Teardown first, then say what was done."""
    started = time.perf_counter()
    with signals_ignored():
        domains, volumes, errors = teardown(uri, prefix, pool)
    say(f"teardown: undefined {domains} domains and deleted {volumes} volumes named {prefix}* "
        f"({time.perf_counter() - started:.1f}s)")
    for error in errors[:20]:
        say(f"teardown: {error}", err=True)
    return not errors


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    if args.cleanup:
        try:
            ok = cleanup(args.connect, args.cleanup, args.pool)
        except BenchError as exc:
            print(f"plan_bench: {exc}", file=sys.stderr)
            return 1
        for folder in Path(tempfile.gettempdir()).glob(f"{args.cleanup}*"):
            shutil.rmtree(folder, ignore_errors=True)
            say(f"teardown: removed {folder}")
        return 0 if ok else 1
    prefix = f"bench-{secrets.token_hex(3)}-"
    instance = prefix.rstrip("-")
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}"))
    code = 0
    with signals_raise():
        try:
            code = _bench(args, prefix, instance, workdir)
        except BenchError as exc:
            say(f"plan_bench: {exc}", err=True)
            code = 1
        except KeyboardInterrupt:
            say("\nplan_bench: interrupted", err=True)
            code = 130
        except BrokenPipeError:  # stdout closed (`| head`): still tear down, quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 1
        finally:
            if args.keep:
                say(f"\n--keep: left domains/volumes {prefix}* and {workdir}\n"
                    f"  plan:     RECONCILER_INSTANCE={instance} reconciler plan --connect "
                    f"{args.connect} --config {workdir}/config.yaml {workdir}/manifests\n"
                    f"  clean up: {sys.executable} {sys.argv[0]} --cleanup {prefix}")
            else:
                if not cleanup(args.connect, prefix, args.pool):
                    code = code or 1
                shutil.rmtree(workdir, ignore_errors=True)
    return code


def extra_observation(ctx: Context, pool: str, repeat: int) -> dict[str, float]:
    """What plan-time resolution reads beyond the raw read: the host's facts (available
    memory, interfaces, vCPU limit), and every volume of a pool in detail (done for the pools
    where a plan creates, reuses or deletes a volume)."""
    from reconciler.adapters.libvirt import Libvirt

    hv = Libvirt(ctx.uri, readonly=True)
    calls = {
        "host memory (virNodeGetMemoryStats)": hv.free_memory,
        "host interfaces (virConnectListAllInterfaces)": hv.host_interfaces,
        "vCPU limit (virConnectGetCapabilities)": hv.max_vcpus,
        f"every volume of pool {pool} in detail": lambda: hv.read_volumes(pool),
    }
    out = {}
    try:
        for label, call in calls.items():
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            out[label] = statistics.median(times)
    finally:
        hv.close()
    return out


def _bench(args: argparse.Namespace, prefix: str, instance: str, workdir: Path) -> int:
    reconciler = find_reconciler(args.reconciler)
    conn = check_host(args.connect, args.pool)
    lib = conn.getLibVersion()
    conn.close()
    config = workdir / "config.yaml"
    config.write_text("# empty: every setting at its default (the host's config is not read)\n")
    state_dir = workdir / "state"
    state_dir.mkdir()
    started = time.perf_counter()
    manifests = write_manifests(workdir / "manifests", prefix, args.count)
    written = time.perf_counter() - started
    # Children compile their bytecode once (during the warm-up) into the work dir and reuse it,
    # as an installed tool does, even where PYTHONDONTWRITEBYTECODE is set.
    # The plan cache lives in the work dir too: the first plan (the warm-up) fills it.
    env = dict(os.environ, RECONCILER_INSTANCE=instance,
               PYTHONPYCACHEPREFIX=str(workdir / "pycache"),
               RECONCILER_CACHE_DIR=str(workdir / "cache"),
               XDG_STATE_HOME=str(workdir / "state-home"))  # the cache's key
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("RECONCILER_CONNECT", None)
    ctx = Context(args.connect, prefix, instance, manifests, config, state_dir, reconciler, env)
    print(f"plan_bench: {args.count} VMs, prefix {prefix}, {args.connect} "
          f"(libvirt {lib // 1000000}.{lib // 1000 % 1000}.{lib % 1000}), "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {load_average()}")
    print(f"manifests: {manifests.files} files in {manifests.folder} ({manifests.multi_doc_files} "
          f"multi-document files with {manifests.multi_doc_vms} VMs, the rest one file each), "
          f"written in {written:.2f}s")
    apply_wall = setup(ctx, args.parallel)
    mine, total = count_prefixed(args.connect, prefix)
    print(f"setup: apply defined {mine} domains and their volumes in {apply_wall:.1f}s; the host "
          f"has {total} domains in all (both sides read all of them)")
    report(measure(ctx, args.repeat))
    print(f"host {load_average()} (other work on the host or on libvirtd skews the figures)")
    print_breakdown(f"in-process split of reconciler plan without its cache (fresh process "
                    f"each, median of {args.repeat}):", phases(ctx, args.repeat))
    print_breakdown("startup alone (median wall of a process that does nothing else):",
                    startup_costs(ctx, args.repeat), total=False)
    print_breakdown("the extra observation of a plan that changes something (read-only "
                    f"connection, median of {args.repeat}; a plan with nothing to do reads "
                    "none of it):", extra_observation(ctx, args.pool, args.repeat), total=False)
    if args.profile:
        profile(ctx, args.profile, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
