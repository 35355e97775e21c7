"""The cloud-init seed end to end: on the real libvirtd (upload, attach, change, eject, destroy)
and on libvirt's test driver (which cannot upload volumes: the create fails cleanly).

The user data carries a marker that must never show in plan text, plan JSON, apply output or
logs (-v).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import libvirt
from conftest import TEST_URI, CliResult, run_cli, vm_manifest, without_header, write_manifest
from lxml import etree

from reconciler.core import cloudinit

SECRET = "TOP-SECRET-c1oud"


def user_data(n: int) -> str:
    return f"#cloud-config\nchpasswd: {{expire: false}}\npassword: {SECRET}-{n}\n"


def manifest(name: str, *, version: int | None, policy: str = "live",
             pool: str = "default") -> str:
    extra = f"updatePolicy: {policy}\n"
    if version is not None:
        extra += "cloudInit:\n" + textwrap.indent(_content_yaml(version), "  ")
    return vm_manifest(name, extra=extra, disks=f"- {{name: root, size: 8MiB, pool: {pool}}}")


def _content(version: int) -> dict[str, object]:
    return {"userData": user_data(version), "metaData": {"site": "lab"},
            "networkConfig": "version: 2\nethernets: {}\n"}


def _content_yaml(version: int) -> str:
    return json.dumps(_content(version)) + "\n"  # JSON is YAML


def digest(name: str, version: int) -> str:
    return cloudinit.from_manifest(name, _content(version), pool="default").digest


def cli(host_uri: str, command: str, folder: Path, *extra: str) -> CliResult:
    state = ["--state-dir", str(folder.parent / "state")] if command == "apply" else []
    # apply logs (-v: every action); plan logs nothing, and takes no log options
    yes = ["--yes", "-v", "--log-format", "json"] if command == "apply" else []
    started = time.monotonic()
    r = run_cli(command, *yes, "--connect", host_uri, *state,
                *extra, folder)
    print(f"$ {command} {' '.join(extra)} -> {r.code} in {time.monotonic() - started:.1f}s\n"
          f"{r.stdout}{r.stderr}")
    return r


def never_shown(*results: CliResult) -> None:
    for r in results:
        assert SECRET not in r.stdout and SECRET not in r.stderr


def download(vol: libvirt.virStorageVol) -> bytes:
    """The volume's bytes, through the storage stream API."""
    size = vol.info()[1]
    stream = vol.connect().newStream(0)
    vol.download(stream, 0, size, 0)
    chunks = []
    while True:
        data = stream.recv(256 * 1024)
        if not data:
            break
        chunks.append(data)
    stream.finish()
    return b"".join(chunks)


def seeds(root: etree._Element) -> list[etree._Element]:
    return [d for d in root.iterfind("devices/disk") if d.get("device") == "cdrom"]


def medium(cdrom: etree._Element) -> str | None:
    source = cdrom.find("source")
    return None if source is None else source.get("volume") or source.get("file")


def root_of(host, name: str, *, inactive: bool = False) -> etree._Element:  # type: ignore[no-untyped-def]
    return etree.fromstring(host.xml(name, inactive=inactive).encode())


def converged(host, folder: Path) -> CliResult:  # type: ignore[no-untyped-def]
    r = cli(host.uri, "plan", folder, "--detailed-exitcode")
    assert (r.code, without_header(r.stdout)) == (
        0, "No changes. The live state matches the manifests.\n")
    return r


# --- the real libvirtd ---------------------------------------------------------------------------


def test_seed_is_uploaded_attached_and_replaced_without_showing_user_data(host, tmp_path,
                                                                          capfd) -> None:
    name = f"{host.prefix}ci"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", manifest(name, version=1))
    shown: list[CliResult] = []

    r = cli(host.uri, "plan", folder)
    shown.append(r)
    assert f"cloudInit {digest(name, 1)}" in r.stdout
    r = cli(host.uri, "apply", folder)
    shown.append(r)
    assert r.code == 0, r.stdout + r.stderr
    assert f"{name}: created, started\n" in r.stdout
    assert '"event": "cloud-init seed uploaded"' in r.stderr  # -v logs reach r.stderr

    vol = host.volume(f"{name}-cidata")
    assert vol is not None
    label, files = cloudinit.read_iso(download(vol))
    assert label == "cidata"
    assert files["user-data"].decode() == user_data(1)
    assert files["meta-data"].decode() == (f"instance-id: {name}\nlocal-hostname: {name}\n"
                                           "site: lab\n")
    assert files["network-config"] == b"version: 2\nethernets: {}\n"
    for inactive in (True, False):
        (cdrom,) = seeds(root_of(host, name, inactive=inactive))
        assert cdrom.find("source").get("volume") == f"{name}-cidata"
        assert cdrom.find("target").get("bus") == "sata"
        assert cdrom.find("readonly") is not None
    first_id = host.domain(name).ID()
    shown.append(converged(host, folder))

    # New user data: re-uploaded, and the running VM takes it at its next boot.
    write_manifest(folder, "vm.yaml", manifest(name, version=2))
    change = (f"cloudInit {digest(name, 1)} -> {digest(name, 2)} needs a restart "
              "(updatePolicy: live) -- pending restart")
    r = cli(host.uri, "plan", folder)
    shown.append(r)
    assert f"~ {name}   {change}" in r.stdout
    r = cli(host.uri, "plan", folder, "--format", "json")
    shown.append(r)
    (action,) = json.loads(r.stdout)["actions"]
    assert action["changes"] == [{"field": "cloudInit", "old": digest(name, 1),
                                  "new": digest(name, 2), "mode": "restart", "note": ""}]
    assert action["pendingRestart"] is True
    r = cli(host.uri, "apply", folder)
    shown.append(r)
    assert r.code == 0, r.stdout + r.stderr
    assert (f"{name}: updated, pending restart: cloudInit {digest(name, 1)} -> {digest(name, 2)} "
            "needs a restart") in r.stdout
    assert host.domain(name).ID() == first_id  # not restarted
    vol = host.volume(f"{name}-cidata")
    assert cloudinit.read_iso(download(vol))[1]["user-data"].decode() == user_data(2)
    shown.append(converged(host, folder))

    never_shown(*shown)
    out, err = capfd.readouterr()
    assert SECRET not in out and SECRET not in err
    applied = root_of(host, name, inactive=True).find("metadata")
    assert SECRET not in etree.tostring(applied, encoding="unicode")


def test_restart_policy_restarts_for_a_new_seed(host, tmp_path) -> None:
    name = f"{host.prefix}cr"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", manifest(name, version=1, policy="restart"))
    assert cli(host.uri, "apply", folder).code == 0
    first_id = host.domain(name).ID()

    write_manifest(folder, "vm.yaml", manifest(name, version=2, policy="restart"))
    r = cli(host.uri, "plan", folder)
    assert f"~ {name}   cloudInit {digest(name, 1)} -> {digest(name, 2)} (restart) -- " \
           "restarts the VM" in r.stdout
    r = cli(host.uri, "apply", folder)
    assert r.code == 0 and f"{name}: updated, forced off after 1s, started\n" in r.stdout, (
        r.stdout + r.stderr)
    assert host.domain(name).isActive() and host.domain(name).ID() != first_id
    assert cloudinit.read_iso(download(host.volume(f"{name}-cidata")))[1]["user-data"] == \
        user_data(2).encode()
    converged(host, folder)


def test_seed_goes_with_its_cloud_init_and_with_the_vm(host, tmp_path) -> None:
    name = f"{host.prefix}cg"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", manifest(name, version=1))
    assert cli(host.uri, "apply", folder).code == 0
    assert host.volume(f"{name}-cidata") is not None

    # cloudInit removed: detached from the config, ejected from the running VM, volume deleted.
    write_manifest(folder, "vm.yaml", manifest(name, version=None))
    r = cli(host.uri, "plan", folder)
    assert f"~ {name}   cloudInit (remove, seed volume deleted) (live)" in r.stdout
    r = cli(host.uri, "apply", folder)
    assert r.code == 0 and f"{name}: hot-plugged\n" in r.stdout, r.stdout + r.stderr
    assert seeds(root_of(host, name, inactive=True)) == []
    assert [medium(c) for c in seeds(root_of(host, name))] in ([], [None])  # none, or empty
    assert host.volume(f"{name}-cidata") is None
    converged(host, folder)

    # Back again (a stopped VM this time), then the VM is destroyed: the seed goes with it.
    write_manifest(folder, "vm.yaml", manifest(name, version=1).replace(
        "state: running", "state: stopped"))
    assert cli(host.uri, "apply", folder).code == 0
    assert len(seeds(root_of(host, name, inactive=True))) == 1
    converged(host, folder)
    (folder / "vm.yaml").unlink()
    r = cli(host.uri, "plan", folder, "--allow-empty")
    assert f"seed volume deleted: {name}-cidata" in r.stdout
    assert cli(host.uri, "apply", folder, "--allow-empty").code == 0
    assert not host.exists(name)
    assert host.volume(f"{name}-cidata") is None
    assert host.volume(f"{name}-root") is not None  # retained, as disks are by default


def test_a_missing_seed_volume_is_rebuilt(host, tmp_path) -> None:
    name = f"{host.prefix}cm"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", manifest(name, version=1).replace(
        "state: running", "state: stopped"))
    assert cli(host.uri, "apply", folder).code == 0
    host.volume(f"{name}-cidata").delete(0)
    r = cli(host.uri, "plan", folder)
    assert f"~ {name}   cloudInit unknown -> {digest(name, 1)}" in r.stdout
    assert cli(host.uri, "apply", folder).code == 0
    assert host.volume(f"{name}-cidata") is not None
    converged(host, folder)


# --- libvirt's test driver -----------------------------------------------------------------------


def test_test_driver_plans_the_seed_but_cannot_upload_it(testdrv, prefix, tmp_path) -> None:
    name = f"{prefix}ci"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", manifest(name, version=1, pool="default-pool"))
    r = cli(TEST_URI, "plan", folder)
    assert r.code == 0
    assert f"+ {name}   1 vcpu, 64MiB, disks root 8MiB, cloudInit {digest(name, 1)}" in r.stdout
    r2 = cli(TEST_URI, "apply", folder)
    assert r2.code == 1
    assert f"uploading volume {name}-cidata to pool default-pool" in r2.stdout
    assert "not supported" in r2.stdout
    never_shown(r, r2)
    pool = testdrv.storagePoolLookupByName("default-pool")
    assert f"{name}-cidata" not in pool.listVolumes()  # no half-made seed left behind
    assert name not in {d.name() for d in testdrv.listAllDomains(0)}


def test_test_driver_vm_without_cloud_init_is_unaffected(testdrv, prefix, tmp_path) -> None:
    name = f"{prefix}no"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", manifest(name, version=None, pool="default-pool"))
    assert cli(TEST_URI, "apply", folder).code == 0
    root = etree.fromstring(testdrv.lookupByName(name).XMLDesc(0).encode())
    assert seeds(root) == []
    assert cli(TEST_URI, "plan", folder, "--detailed-exitcode").code == 0
