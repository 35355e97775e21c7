#!/usr/bin/env python3
"""Benchmark: start-up of the CLI, whole processes, beside a raw libvirt-python baseline.

Figures (median of ``--repeat`` rounds, each round runs every process once, interleaved):

(a) ``python -c pass``: the interpreter's floor;
(b) the raw baseline: ``python -c "import libvirt; libvirt.openReadOnly(URI).close()"`` on
    ``test:///default``, and on the real libvirtd (``--connect``, qemu:///system) when it answers;
(c) ``reconciler --version``: target 0.06 s;
(d) ``reconciler validate`` of 10 manifests: no target, the ratio is printed;
(e) ``reconciler apply --yes`` of 10 VMs already applied (nothing to do): target 0.1 s.

(e) runs on the real libvirtd: 10 small stopped OS-less VMs (one 16MiB volume, one NIC each),
named ``bench-<hex>-*``, owned by their own instance (RECONCILER_INSTANCE), defined once by the
tool's own apply and removed at the end (also on Ctrl-C). Without a libvirtd (or with
``--test-driver``) it is approximated on libvirt's test driver: test:// drivers live per
connection, so 10 VMs (no disks, no NICs; running, as the test driver starts the domains of a
node file) are applied once on ``test:///default`` in a helper process and their domain XML
written into a copy of ``examples/test-node.xml``; the timed apply connects to that file.

The reconciler timed is the tree this script lives in (``--tree`` another one, e.g. a checkout
of an older commit): ``python -c "from reconciler.shells.cli import main; main()"`` with that
tree first on PYTHONPATH, as the console script runs it. The manifest folder is a git work tree
with one commit, as on a host (apply asks git for its revision).

These are figures, not a test: exit 0 whatever they are (1 when the benchmark could not run);
with ``--check``, exit 1 when a target is missed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import libvirt
from plan_bench import (
    BenchError,
    Run,
    count_prefixed,
    load_average,
    run_timed,
    say,
    signals_ignored,
    signals_raise,
    tail,
    teardown,
    write_manifests,
)

ROOT = Path(__file__).resolve().parents[1]
COUNT = 10
TARGETS = {"reconciler --version": 0.06, "apply (nothing to do)": 0.1}
CLI = "from reconciler.shells.cli import main; main()"
RAW = "import sys, libvirt; libvirt.openReadOnly(sys.argv[1]).close()"

# The fallback's VMs: nothing the test driver's node file cannot hold (no volumes).
TEST_VM = """\
apiVersion: reconciler/v1
kind: VirtualMachine
metadata:
  name: {name}
  labels: {{tier: web}}
spec:
  vcpus: 1
  maxVcpus: 2
  memory: 64MiB
  state: running
"""

# Applies the manifests on test:///default (shared in-process while a connection is open) with
# the tool's own apply, then writes the node file with their domains added.
TEST_SETUP = """\
import sys
import libvirt
from reconciler.shells.cli import main
node, out, folder, config, state = sys.argv[1:6]
keep = libvirt.open("test:///default")
try:
    main(["apply", "--yes", "--connect", "test:///default", "--config", config,
          "--state-dir", state, folder], standalone_mode=False)
except SystemExit as exc:
    if exc.code:
        sys.exit(exc.code)
xml = [d.XMLDesc(0) for d in keep.listAllDomains(0) if d.name() != "test"]
text = open(node).read()
open(out, "w").write(text.replace("</node>", "".join(xml) + "</node>"))
print(len(xml))
"""


@dataclass
class Setup:
    tree: Path
    workdir: Path
    folder: Path
    config: Path
    state_dir: Path
    uri: str  # where the no-op apply connects
    real: bool  # the real libvirtd (else the test driver's approximation)
    env: dict[str, str]

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-c", CLI, *args]

    def apply_cmd(self) -> list[str]:
        return self.cli("apply", "--yes", "--connect", self.uri, "--config", str(self.config),
                        "--state-dir", str(self.state_dir), str(self.folder))


def libvirtd_answers(uri: str) -> bool:
    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError:
        return False
    return True


def git_commit(folder: Path) -> None:
    """The manifest folder as a work tree with one commit (skipped without git)."""
    if shutil.which("git") is None:
        return
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", "-C", str(folder), *cmd], env=env, check=True,
                       capture_output=True)


def prepare_real(s: Setup, prefix: str, count: int) -> None:
    write_manifests(s.folder, prefix, count)
    git_commit(s.folder)
    say(f"setup: reconciler apply of {count} VMs on {s.uri} ...")
    run = run_timed(s.apply_cmd(), s.env)
    if run.code != 0:
        raise BenchError(f"the setup apply exited {run.code}:\n{tail(run.stderr or run.stdout)}")
    mine, total = count_prefixed(s.uri, prefix)
    if mine != count:
        raise BenchError(f"the setup apply exited 0 but {mine} of {count} domains are defined")
    say(f"setup: {mine} domains defined in {run.wall:.1f}s ({total} on the host in all)")


def prepare_test(s: Setup, prefix: str, count: int) -> None:
    s.folder.mkdir(parents=True)
    for i in range(count):
        name = f"{prefix}{i:02d}"
        (s.folder / f"{name}.yaml").write_text(TEST_VM.format(name=name))
    git_commit(s.folder)
    node = s.workdir / "node.xml"
    cmd = [sys.executable, "-c", TEST_SETUP, str(ROOT / "examples" / "test-node.xml"),
           str(node), str(s.folder), str(s.config), str(s.workdir / "setup-state")]
    run = run_timed(cmd, s.env)
    if run.code != 0 or run.stdout.strip().splitlines()[-1:] != [str(count)]:
        raise BenchError(f"the test driver's setup failed ({run.code}):\n{tail(run.stderr)}")
    s.uri = f"test://{node}"
    say(f"setup: {count} VMs applied on test:///default and written into {node}")


def check(label: str, run: Run, expect: str) -> None:
    if run.code != 0 or expect not in run.stdout:
        raise BenchError(f"{label} exited {run.code} without {expect!r}:\n{tail(run.stdout)}\n"
                         f"{tail(run.stderr)}")


def measure(s: Setup, repeat: int, raw_uris: Sequence[str]) -> dict[str, list[Run]]:
    cmds: dict[str, tuple[list[str], str]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], ""),
        **{f"raw: connect {uri}": ([sys.executable, "-c", RAW, uri], "") for uri in raw_uris},
        "reconciler --version": (s.cli("--version"), "reconciler, version"),
        f"validate ({COUNT} VMs)": (s.cli("validate", "--config", str(s.config),
                                          str(s.folder)), "valid"),
        "apply (nothing to do)": (s.apply_cmd(), "No changes"),
    }
    say("warm-up (bytecode, plan cache) ...")
    for _ in range(2):
        for label, (cmd, expect) in cmds.items():
            check(label, run_timed(cmd, s.env), expect)
    runs: dict[str, list[Run]] = {label: [] for label in cmds}
    for _ in range(repeat):
        for label, (cmd, expect) in cmds.items():
            run = run_timed(cmd, s.env)
            check(label, run, expect)
            runs[label].append(run)
    return runs


def report(runs: dict[str, list[Run]], baseline: str, check_targets: bool) -> bool:
    """Print the figures; whether every target is met."""
    base = statistics.median(r.wall for r in runs[baseline])
    met = True
    print(f"\n{'':<40} {'median':>8} {'min':>8} {'cpu':>7} {'ratio':>6}  target")
    for label, samples in runs.items():
        median = statistics.median(r.wall for r in samples)
        cpu = statistics.median(r.cpu for r in samples)
        target = TARGETS.get(label)
        verdict = ""
        if target is not None:
            ok = median <= target
            met = met and ok
            verdict = f"<= {target:.2f}s: {'MET' if ok else 'NOT MET'}"
        print(f"{label:<40} {median:>7.3f}s {min(r.wall for r in samples):>7.3f}s "
              f"{cpu:>6.3f}s {median / base:>5.2f}x  {verdict}")
    print(f"(ratio: to the median of {baseline!r}; {load_average()})")
    if check_targets and not met:
        print("--check: a target is missed")
    return met


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time the CLI's start-up against a raw "
                                                 "libvirt-python connection.")
    parser.add_argument("--repeat", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--connect", default="qemu:///system",
                        help="the real libvirtd for the no-op apply (default qemu:///system)")
    parser.add_argument("--pool", default="default", help="storage pool of the VM volumes")
    parser.add_argument("--test-driver", action="store_true",
                        help="the no-op apply on the test driver even when libvirtd answers")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the reconciler source tree to time (default: this one)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.tree = args.tree.resolve()
    if not (args.tree / "reconciler" / "shells" / "cli.py").is_file():
        parser.error(f"--tree {args.tree}: no reconciler source tree there")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    real = not args.test_driver and libvirtd_answers(args.connect)
    prefix = f"bench-{secrets.token_hex(3)}-"
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    # `python -c` puts the working directory first on sys.path: not a source tree's.
    os.chdir(workdir)
    config = workdir / "config.yaml"
    config.write_text("# empty: every setting at its default (the host's config is not read)\n")
    # Children reuse the bytecode compiled in the warm-up, as an installed tool does.
    env = dict(os.environ, PYTHONPATH=str(args.tree),
               RECONCILER_INSTANCE=prefix.rstrip("-"),
               PYTHONPYCACHEPREFIX=str(workdir / "pycache"),
               RECONCILER_CACHE_DIR=str(workdir / "cache"),
               XDG_STATE_HOME=str(workdir / "state-home"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("RECONCILER_CONNECT", None)
    s = Setup(args.tree, workdir, workdir / "manifests", config, workdir / "state",
              args.connect, real, env)
    met, code = True, 0
    with signals_raise():
        try:
            print(f"startup_bench: {args.tree}, Python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs, {load_average()}")
            if real:
                prepare_real(s, prefix, COUNT)
            else:
                say(f"{args.connect} does not answer (or --test-driver): the no-op apply runs "
                    "on the test driver (an approximation, see bench/README.md)")
                prepare_test(s, prefix, COUNT)
            raw_uris = ["test:///default", *([args.connect] if real else [])]
            runs = measure(s, args.repeat, raw_uris)
            print(f"\n{args.repeat} rounds; the no-op apply on "
                  f"{s.uri if real else 'the test driver (a node file with the VMs)'}")
            met = report(runs, f"raw: connect {raw_uris[-1]}", args.check)
        except BenchError as exc:
            say(f"startup_bench: {exc}", err=True)
            code = 1
        except KeyboardInterrupt:
            say("\nstartup_bench: interrupted", err=True)
            code = 130
        finally:
            if real:
                started = time.perf_counter()
                with signals_ignored():
                    domains, volumes, errors = teardown(args.connect, prefix, args.pool)
                say(f"teardown: undefined {domains} domains, deleted {volumes} volumes "
                    f"({time.perf_counter() - started:.1f}s)")
                for error in errors:
                    say(f"teardown: {error}", err=True)
            os.chdir(ROOT)
            shutil.rmtree(workdir, ignore_errors=True)
    if code:
        return code
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
