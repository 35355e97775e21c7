"""scripts/second-host itself: `start` is idempotent, `stop` powers the host off (its guests
too) without touching the first host, and a host whose daemons died comes back on `start`.

Each test leaves the second host up again, whatever happens.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import libvirt
import pytest
from conftest import SECOND_HOST_SCRIPT, Host
from fleethosts import make_guest
from lxml import etree

pytestmark = pytest.mark.libvirtd

SECOND_HOST_UUID = "7e57b0b2-5ec0-4d0e-8b0b-000000000002"  # as in scripts/second-host


def script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SECOND_HOST_SCRIPT), *args], capture_output=True, text=True,
                          timeout=180)


def daemon_pids() -> tuple[int, int]:
    """(libvirtd, virtlogd) of the second host, from `status`."""
    r = script("status")
    assert r.returncode == 0, r.stdout + r.stderr
    found = re.search(r"up \(libvirtd (\d+), virtlogd (\d+)\)", r.stdout)
    assert found, r.stdout
    return int(found[1]), int(found[2])


def host_uuid(conn: libvirt.virConnect) -> str:
    text: str = etree.fromstring(conn.getCapabilities()).findtext("host/uuid")
    return text


def qemu_of(name: str) -> list[int]:
    """Pids of QEMU processes running guest ``name`` (on either host)."""
    r = subprocess.run(["pgrep", "-f", f"guest={name},"], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def first_libvirtd() -> int:
    """The first host's libvirtd: the one in this process's mount namespace."""
    mine = os.readlink("/proc/self/ns/mnt")
    r = subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, text=True)
    [pid] = [int(p) for p in r.stdout.split() if os.readlink(f"/proc/{p}/ns/mnt") == mine]
    return pid


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def own_second_host(second_host_uri: str) -> object:
    if os.geteuid() != 0:
        pytest.skip("starting and stopping the second host needs root")
    yield
    r = script("start")
    assert r.returncode == 0, r.stderr


def test_start_is_idempotent_and_stop_start_works(own_second_host, host, host_b: Host):
    first_uuid = host_uuid(host.conn)  # random per start of the first libvirtd here
    libvirtd, virtlogd = daemon_pids()

    r = script("start")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == host_b.uri  # the URI, and nothing else on stdout
    assert daemon_pids() == (libvirtd, virtlogd)  # nothing restarted

    name = f"{host.prefix}off"
    make_guest(host_b.conn, name, start=True)
    [qemu] = qemu_of(name)

    r = script("stop")
    assert r.returncode == 0, r.stderr
    r = script("status")
    assert r.returncode == 3
    assert r.stdout.splitlines() == [host_b.uri, "down"]
    assert gone(libvirtd) and gone(virtlogd) and gone(qemu)  # the host is off, guests too
    with pytest.raises(libvirt.libvirtError):
        libvirt.open(host_b.uri)
    assert script("stop").returncode == 0  # stopping a stopped host is fine
    # the first host did not notice
    assert host.conn.getLibVersion() > 0
    assert host_uuid(host.conn) == first_uuid

    r = script("start")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == host_b.uri
    host_b.reconnect()
    assert host_uuid(host_b.conn) == SECOND_HOST_UUID
    assert host_b.conn.storagePoolLookupByName("default").isActive()
    # persistent definitions survive a power cycle; the guest is off
    assert host_b.domain(name).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF


def test_start_after_the_daemons_died(own_second_host, host_b: Host):
    """Stale state: pid files of dead daemons, a guest whose libvirtd died. `start` powers
    what is left off and starts afresh."""
    name = f"{host_b.prefix}stale"
    make_guest(host_b.conn, name, start=True)
    [qemu] = qemu_of(name)
    libvirtd, virtlogd = daemon_pids()
    os.kill(libvirtd, signal.SIGKILL)
    os.kill(virtlogd, signal.SIGKILL)
    assert gone(libvirtd) and gone(virtlogd)
    assert script("status").returncode == 3
    # Pids get reused (and after a reboot the pid files name anything): the pid files now name
    # the first host's libvirtd and an unrelated process; neither may be signalled.
    base = Path(host_b.uri.split("socket=", 1)[1]).parents[1]
    first = first_libvirtd()
    bystander = subprocess.Popen(["sleep", "300"])
    (base / "libvirtd.pid").write_text(f"{first}\n")
    (base / "virtlogd.pid").write_text(f"{bystander.pid}\n")

    try:
        r = script("start")
        assert r.returncode == 0, r.stderr
        assert bystander.poll() is None and os.path.exists(f"/proc/{first}")
    finally:
        bystander.kill()
        bystander.wait()
    assert gone(qemu)  # the orphaned guest was powered off
    new_libvirtd, new_virtlogd = daemon_pids()
    assert new_libvirtd != libvirtd and new_virtlogd != virtlogd
    host_b.reconnect()
    assert host_b.domain(name).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    make_guest(host_b.conn, f"{name}2", start=True)  # and it runs guests again
