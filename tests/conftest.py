"""Fixtures: libvirt's test driver for fast tests, the real libvirtd for lifecycle tests.

Everything a test creates on the real libvirtd carries a unique prefix and is removed afterwards;
test networks are isolated (no <forward>).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import libvirt
import pytest
from click.testing import CliRunner

from reconciler.shells.cli import main

QEMU_URI = "qemu:///system"
TEST_URI = "test:///default"
EXAMPLE_NODE = Path(__file__).resolve().parents[1] / "examples" / "test-node.xml"


def empty_host_uri(name: str) -> str:
    """A URI of libvirt's test driver that opens an empty host of its own (the `default` pool
    and network of examples/test-node.xml; every connection a fresh one), one per ``name``:
    Hosts of a fleet may not share a URI."""
    folder = Path(tempfile.gettempdir()) / "reconciler-test-hosts"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.xml"
    if not path.exists() or path.read_bytes() != EXAMPLE_NODE.read_bytes():
        path.write_bytes(EXAMPLE_NODE.read_bytes())
    return f"test://{path}"
# The second hypervisor host (scripts/second-host: another libvirtd in its own mount namespace,
# started by scripts/testbed-setup), for the two-host tests in tests/fleet.
SECOND_HOST_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "second-host"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run the CLI in-process (so test:///default state is shared with the test)."""
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


def write_manifest(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def vm_manifest(name: str, *, vcpus: int = 1, max_vcpus: int | None = None,
                memory: str = "64MiB", max_memory: str | None = None, state: str = "running",
                extra: str = "", disks: str = "", networks: str = "") -> str:
    """A small VM manifest (OS-less guests need no more than 64MiB)."""
    lines = [
        "apiVersion: reconciler/v1",
        "kind: VirtualMachine",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  vcpus: {vcpus}",
        f"  memory: {memory}",
        f"  state: {state}",
        "  shutdownTimeout: 1s",
    ]
    if max_vcpus:
        lines.append(f"  maxVcpus: {max_vcpus}")
    if max_memory:
        lines.append(f"  maxMemory: {max_memory}")
    lines += [f"  {line}" for line in textwrap.dedent(extra).strip().splitlines()]
    if disks:
        lines.append("  disks:")
        lines += [f"    {line}" for line in textwrap.dedent(disks).strip().splitlines()]
    if networks:
        lines.append("  networks:")
        lines += [f"    {line}" for line in textwrap.dedent(networks).strip().splitlines()]
    return "\n".join(lines) + "\n"


def suspended(manifest: str, value: str = "true") -> str:
    """The manifest with the annotation reconciler/suspend."""
    return manifest.replace("metadata:\n", f'metadata:\n  annotations:\n    reconciler/suspend: '
                                           f'"{value}"\n', 1)


# --- the real libvirtd ---------------------------------------------------------------------------


def _open_qemu() -> libvirt.virConnect | None:
    try:
        return libvirt.open(QEMU_URI)
    except libvirt.libvirtError:
        return None


def accelerator(conn: libvirt.virConnect) -> str:
    caps = conn.getCapabilities()
    return "kvm" if "<domain type='kvm'" in caps else "tcg"


def pytest_report_header(config: pytest.Config) -> list[str]:
    conn = _open_qemu()
    if conn is None:
        return [f"libvirtd: {QEMU_URI} not reachable; lifecycle tests "
                + ("FAIL (CI=true)" if os.environ.get("CI") == "true" else "are skipped")]
    version = conn.getVersion()
    qemu = f"{version // 1000000}.{version // 1000 % 1000}.{version % 1000}"
    line = f"libvirtd: {QEMU_URI}, QEMU {qemu}, accelerator: {accelerator(conn)}"
    conn.close()
    uri = second_host_uri_text()
    second = _open(uri)
    if second is None:
        return [line, f"second host: {uri} not reachable; two-host tests "
                + ("FAIL (CI=true)" if os.environ.get("CI") == "true" else "are skipped")]
    second.close()
    return [line, f"second host: {uri}"]


def _open(uri: str) -> libvirt.virConnect | None:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError:
        return None


def _missing(message: str) -> NoReturn:
    """The test bed must provide it under CI (fail); elsewhere the test is skipped."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def second_host_uri_text() -> str:
    """The second host's URI: RECONCILER_SECOND_HOST_URI, or what scripts/second-host says."""
    uri = os.environ.get("RECONCILER_SECOND_HOST_URI")
    if uri:
        return uri
    return subprocess.run([str(SECOND_HOST_SCRIPT), "uri"], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="session")
def second_host_uri() -> str:
    """The URI of the second hypervisor host (scripts/second-host), checked to answer and to be
    another host than qemu:///system (its own host UUID)."""
    uri = second_host_uri_text()
    conn = _open(uri)
    if conn is None:
        _missing(f"the second host {uri} is not reachable: run scripts/second-host start "
                 "(scripts/testbed-setup does)")
    conn.close()
    return uri


@pytest.fixture
def qemu_conn() -> Iterator[libvirt.virConnect]:
    conn = _open_qemu()
    if conn is None:
        _missing(f"{QEMU_URI} is not reachable: run scripts/testbed-setup")
    yield conn
    with contextlib.suppress(libvirt.libvirtError):  # host.reconnect() may have closed it
        conn.close()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A unique name prefix for everything one test creates."""
    return f"t{secrets.token_hex(3)}-"


@pytest.fixture(autouse=True)
def own_instance(prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test is its own reconciler instance: it never sees (or destroys) the domains of
    other tests or of anything else on the host."""
    instance = f"test-{prefix.rstrip('-')}"
    monkeypatch.setenv("RECONCILER_INSTANCE", instance)
    # Its writers' locks in its own folder, never the host's /run/reconciler (a writer killed
    # by a test leaves its lock file behind; flock makes it harmless, but it is litter).
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / ".locks"))
    return instance


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own plan cache and cache key (so every second plan in a test runs
    warm), never the user's."""
    folder = tmp_path / ".reconciler-cache"
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(folder))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / ".state"))  # where its key is kept
    return folder


@pytest.fixture
def host(qemu_conn: libvirt.virConnect, prefix: str) -> Iterator[Host]:
    """The real libvirtd, cleaned of this test's domains, volumes and networks afterwards."""
    h = Host(qemu_conn, prefix)
    yield h
    h.cleanup()


@pytest.fixture
def host_b(second_host_uri: str, prefix: str) -> Iterator[Host]:
    """The second hypervisor host, cleaned of this test's domains and volumes afterwards (the
    same prefix as ``host``: a test that moves a guest between them cleans both). Never define
    networks on it: both hosts share this machine's bridges."""
    conn = _open(second_host_uri)
    if conn is None:
        _missing(f"the second host {second_host_uri} stopped answering")
    h = Host(conn, prefix, second_host_uri)
    yield h
    h.cleanup()
    with contextlib.suppress(libvirt.libvirtError):
        h.conn.close()


class Host:
    def __init__(self, conn: libvirt.virConnect, prefix: str, uri: str = QEMU_URI) -> None:
        self.conn = conn
        self.prefix = prefix
        self.uri = uri

    def network(self) -> str:
        """An isolated network (no <forward>, no addresses) for this test's NICs."""
        name = f"{self.prefix}net"
        bridge = f"rc{self.prefix.strip('-')[1:]}"
        xml = (f"<network><name>{name}</name><bridge name='{bridge}' stp='off'/></network>")
        net = self.conn.networkDefineXML(xml)
        net.create()
        return name

    def domain(self, name: str) -> libvirt.virDomain:
        return self.conn.lookupByName(name)

    def xml(self, name: str, *, inactive: bool = False) -> str:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return self.domain(name).XMLDesc(flags)

    def exists(self, name: str) -> bool:
        try:
            self.conn.lookupByName(name)
        except libvirt.libvirtError:
            return False
        return True

    def volume(self, name: str, pool: str = "default") -> libvirt.virStorageVol | None:
        try:
            return self.conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
        except libvirt.libvirtError:
            return None

    def wait(self, predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return bool(predicate())

    def reconnect(self) -> None:
        """A fresh connection, e.g. after libvirtd restarted."""
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()
        self.conn = libvirt.open(self.uri)

    def cleanup(self) -> None:
        try:
            self.conn.getLibVersion()
        except libvirt.libvirtError:
            self.reconnect()
        for dom in self.conn.listAllDomains(0):
            if dom.name().startswith(self.prefix):
                try:
                    if dom.isActive():
                        dom.destroy()
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                                      | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
                except libvirt.libvirtError:
                    pass
        for pool in self.conn.listAllStoragePools(0):
            if not pool.isActive():
                continue
            for attempt in range(5):  # another tenant's volume changing fails a refresh
                try:
                    pool.refresh(0)
                    break
                except libvirt.libvirtError:
                    if attempt == 4:
                        raise
                    time.sleep(0.2)
            for vol in pool.listAllVolumes(0):
                if vol.name().startswith(self.prefix):
                    with contextlib.suppress(libvirt.libvirtError):
                        vol.delete(0)
        for pool in self.conn.listAllStoragePools(0):
            if pool.name().startswith(self.prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    path = pool.XMLDesc(0).split("<path>")[1].split("</path>")[0]
                    if pool.isActive():
                        for vol in pool.listAllVolumes(0):
                            vol.delete(0)
                        pool.destroy()
                    pool.undefine()
                    if Path(path).is_dir() and not any(Path(path).iterdir()):
                        Path(path).rmdir()
        for net in self.conn.listAllNetworks(0):
            if net.name().startswith(self.prefix):
                try:
                    if net.isActive():
                        net.destroy()
                    net.undefine()
                except libvirt.libvirtError:
                    pass


# --- libvirt's test driver -----------------------------------------------------------------------


@pytest.fixture
def testdrv(prefix: str) -> Iterator[libvirt.virConnect]:
    """test:///default (shared by every connection of this process), cleaned afterwards."""
    conn = libvirt.open(TEST_URI)
    yield conn
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    pool = conn.storagePoolLookupByName("default-pool")
    for vol in pool.listAllVolumes(0):
        if vol.name().startswith(prefix):
            vol.delete(0)
    for net in conn.listAllNetworks(0):
        if net.name().startswith(prefix):
            if net.isActive():
                net.destroy()
            net.undefine()
    conn.close()


@pytest.fixture
def untouched_test_domain(testdrv: libvirt.virConnect) -> Iterator[None]:
    """The test driver's own domain `test` is unmanaged: no test may change it (use with
    ``pytestmark = pytest.mark.usefixtures("untouched_test_domain")``)."""
    dom = testdrv.lookupByName("test")
    before = (dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), dom.isActive(), dom.autostart())
    yield
    dom = testdrv.lookupByName("test")
    assert (dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), dom.isActive(),
            dom.autostart()) == before


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """An empty manifest folder."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    return folder


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def plan_testdrv(manifests: Path, *args: str | Path) -> CliResult:
    """``reconciler plan`` of ``manifests`` on test:///default, in-process."""
    return run_cli("plan", "--connect", TEST_URI, *args, manifests)


# --- the CLI against the real libvirtd, printed for the test's log ------------------------------


def apply(host, folder: Path, *extra: str) -> CliResult:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    r = run_cli("apply", "--yes", "--connect", host.uri, "--state-dir", folder.parent / "state",
                *extra, folder)
    print(f"$ apply -> {r.code} in {time.monotonic() - started:.1f}s\n{r.stdout}{r.stderr}")
    return r


def plan(host, folder: Path, *extra: str) -> CliResult:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    r = run_cli("plan", "--connect", host.uri, *extra, folder)
    print(f"$ plan {' '.join(extra)} -> {r.code} in {time.monotonic() - started:.1f}s\n"
          f"{r.stdout}{r.stderr}")
    return r


def without_header(text: str) -> str:
    """A text plan without its last line, the header ("Made for instance ... on HOST ..."),
    which names the host, the commit and the folder: for comparing plans made elsewhere."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[:-1]) if lines and lines[-1].startswith("Made for instance ") else text
