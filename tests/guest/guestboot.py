"""A tiny Linux guest for live-resize tests: Debian's cloud kernel plus a busybox initramfs.

Under KVM a Linux kernel does not boot on the test machines (no nested SVM), so the guest runs
under TCG, booted directly (<os><kernel>/<initrd>/<cmdline>): up in a few seconds. Its /init
loads the virtio modules the balloon needs, onlines hot-plugged CPUs (busybox has no udev) and
reports on the serial console what the guest itself sees: CPUs online / present and MemTotal.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/usr/bin/busybox")
# What the balloon needs; their dependencies are resolved with modinfo and loaded first.
WANTED_MODULES = ("virtio_pci", "virtio_balloon")
READY = "GUEST-READY"
CMDLINE = "console=ttyS0 quiet mitigations=off"

INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in {modules}; do
  insmod /lib/modules/$m.ko || echo "GUEST: insmod $m failed"
done
echo "{ready}"
last=
while :; do
  # No udev: online every hot-plugged CPU ourselves.
  for f in /sys/devices/system/cpu/cpu[0-9]*/online; do
    [ -e "$f" ] || continue
    read v < "$f"
    [ "$v" = 0 ] && echo 1 > "$f" 2>/dev/null
  done
  read online < /sys/devices/system/cpu/online
  read present < /sys/devices/system/cpu/present
  while read key value unit; do
    [ "$key" = MemTotal: ] && total=$value && break
  done < /proc/meminfo
  now="cpus-online=$online cpus-present=$present memtotal-kib=$total"
  [ "$now" = "$last" ] || echo "GUEST: $now"
  last=$now
  sleep 1
done
"""

_STATE = re.compile(r"GUEST: cpus-online=(\S+) cpus-present=(\S+) memtotal-kib=(\d+)")


class Missing(Exception):
    """Something the guest is built from is not installed (scripts/testbed-setup installs it)."""


@dataclass(frozen=True)
class BootFiles:
    kernel: Path
    initrd: Path
    version: str
    modules: tuple[str, ...]
    cmdline: str = CMDLINE


@dataclass(frozen=True)
class GuestState:
    """One status line of the guest's /init: what the guest kernel itself sees."""

    cpus_online: str  # e.g. "0-1"
    cpus_present: str
    memtotal_kib: int


def find_kernel() -> tuple[Path, str]:
    """The newest Debian cloud kernel whose modules include virtio_balloon."""
    for kernel in sorted(Path("/boot").glob("vmlinuz-*-cloud-amd64"), reverse=True):
        version = kernel.name.removeprefix("vmlinuz-")
        if list(Path("/lib/modules", version).rglob("virtio_balloon.ko*")):
            return kernel, version
    raise Missing("no /boot/vmlinuz-*-cloud-amd64 with virtio_balloon "
                  "(apt-get install linux-image-cloud-amd64)")


def module_order(version: str, wanted: tuple[str, ...] = WANTED_MODULES) -> list[tuple[str, Path]]:
    """(name, file) of ``wanted`` and their dependencies (modinfo), dependencies first."""
    order: list[tuple[str, Path]] = []

    def visit(name: str, seen: tuple[str, ...]) -> None:
        if any(n == name for n, _ in order):
            return
        if name in seen:
            raise Missing(f"module dependency cycle: {' -> '.join((*seen, name))}")
        out = subprocess.run(["modinfo", "-k", version, name], capture_output=True, text=True,
                             check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        for dep in filter(None, fields.get("depends", "").strip().split(",")):
            visit(dep, (*seen, name))
        path = Path(fields["filename"].strip())
        if path.suffix != ".ko":
            raise Missing(f"{path}: compressed modules are not supported (busybox insmod)")
        order.append((name, path))

    for name in wanted:
        visit(name, ())
    return order


def build(folder: Path) -> BootFiles:
    """Kernel + initramfs (cpio newc, uncompressed) in ``folder``; built once per folder."""
    for tool in ("cpio", "modinfo"):
        if shutil.which(tool) is None:
            raise Missing(f"{tool} is not installed")
    if not BUSYBOX.exists():
        raise Missing(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    kernel, version = find_kernel()
    modules = module_order(version)
    initrd = folder / f"initrd-{version}.cpio"
    if not initrd.exists():
        root = folder / "root"
        shutil.rmtree(root, ignore_errors=True)
        for sub in ("bin", "dev", "proc", "sys", "lib/modules"):
            (root / sub).mkdir(parents=True)
        shutil.copy2(BUSYBOX, root / "bin/busybox")
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                os.symlink("busybox", root / "bin" / applet)
        for name, path in modules:
            shutil.copy2(path, root / "lib/modules" / f"{name}.ko")
        init = root / "init"
        init.write_text(INIT.format(modules=" ".join(n for n, _ in modules), ready=READY))
        init.chmod(0o755)
        names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        partial = initrd.with_suffix(".part")
        with partial.open("wb") as out:
            subprocess.run(["cpio", "--create", "--format=newc", "--quiet", "--owner=0:0"],
                           input="\n".join(names).encode(), cwd=root, stdout=out, check=True)
        partial.rename(initrd)
        shutil.rmtree(root)
    return BootFiles(kernel, initrd, version, tuple(n for n, _ in modules))


def states(console: str) -> list[GuestState]:
    return [GuestState(m[1], m[2], int(m[3])) for m in _STATE.finditer(console)]


def wait_for(predicate, timeout: float, step: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
