"""The cloud-init seed, pure: manifest content -> files -> ISO, the hash, validation, XML, diff."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pycdlib
import pytest
import yaml

from reconciler.core import cloudinit, render, words
from reconciler.core.diff import vm as diff
from reconciler.core.diff.guards import Guards
from reconciler.core.model.common import Mark
from reconciler.core.model.vm import DesiredVM, LiveVM
from reconciler.core.plan import Effect, Op
from reconciler.core.validate.checks import validate
from reconciler.core.validate.document import Document
from reconciler.core.xml import common as xmlcommon
from reconciler.core.xml import devices as devicexml
from reconciler.core.xml import domain as domainxml

USER_DATA = "#cloud-config\nusers:\n  - name: ops\n    passwd: TOP-SECRET-123\n"
NETWORK = "version: 2\nethernets:\n  eth0: {dhcp4: true}\n"


def seed(vm: str = "web-01", **content: Any) -> cloudinit.CloudInit:
    return cloudinit.from_manifest(vm, content, pool="default")


def iso_of(vm: str = "web-01", **content: Any) -> pycdlib.PyCdlib:
    image = cloudinit.seed_iso(cloudinit.files(vm, seed(vm, **content)))
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    return iso


def read(iso: pycdlib.PyCdlib, **path: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue()


# --- the ISO -------------------------------------------------------------------------------------


def test_iso_is_labelled_cidata_with_the_three_files_under_their_exact_names() -> None:
    iso = iso_of(userData=USER_DATA, metaData={"foo": "bar"}, networkConfig=NETWORK)
    assert iso.pvd.volume_identifier.decode().rstrip() == "cidata"
    assert iso.joliet_vd is not None and iso.rock_ridge
    names = {c.rock_ridge.name().decode() for c in iso.list_children(rr_path="/")
             if not (c.is_dot() or c.is_dotdot())}
    assert names == {"user-data", "meta-data", "network-config"}
    joliet = {c.file_identifier().decode("utf-16_be").split(";")[0]
              for c in iso.list_children(joliet_path="/") if not (c.is_dot() or c.is_dotdot())}
    assert joliet == names
    assert read(iso, rr_path="/user-data") == USER_DATA.encode()
    assert read(iso, joliet_path="/user-data") == USER_DATA.encode()
    assert read(iso, rr_path="/network-config") == NETWORK.encode()
    meta = yaml.safe_load(read(iso, rr_path="/meta-data"))
    assert meta == {"instance-id": "web-01", "local-hostname": "web-01", "foo": "bar"}
    iso.close()


def test_meta_data_defaults_from_the_vm_name_and_manifest_keys_override_them() -> None:
    label, files = cloudinit.read_iso(cloudinit.seed_iso(cloudinit.files(
        "db-01", seed("db-01", metaData={"instance-id": "db-01-v2"}))))
    assert label == "cidata"
    assert yaml.safe_load(files["meta-data"]) == {"instance-id": "db-01-v2",
                                                  "local-hostname": "db-01"}
    assert list(yaml.safe_load(files["meta-data"])) == ["instance-id", "local-hostname"]


@pytest.mark.parametrize("network_config", [None, "", "  \n"])
def test_network_config_only_when_given(network_config: str | None) -> None:
    content = {"userData": USER_DATA}
    if network_config is not None:
        content["networkConfig"] = network_config
    files = cloudinit.files("web-01", seed(**content))
    assert set(files) == {"user-data", "meta-data"}


def test_user_data_is_optional_and_then_empty() -> None:
    _, files = cloudinit.read_iso(cloudinit.seed_iso(cloudinit.files("web-01", seed())))
    assert files["user-data"] == b""
    assert set(files) == {"user-data", "meta-data"}


# --- the hash ------------------------------------------------------------------------------------


def test_digest_is_short_stable_and_follows_every_file() -> None:
    base = seed(userData=USER_DATA, metaData={"a": 1}, networkConfig=NETWORK)
    assert len(base.digest) == 8 and int(base.digest, 16) >= 0
    assert seed(userData=USER_DATA, metaData={"a": 1}, networkConfig=NETWORK).digest == base.digest
    others = [
        seed(userData=USER_DATA + "\n", metaData={"a": 1}, networkConfig=NETWORK),
        seed(userData=USER_DATA, metaData={"a": 2}, networkConfig=NETWORK),
        seed(userData=USER_DATA, metaData={"a": 1}),
        seed("web-02", userData=USER_DATA, metaData={"a": 1}, networkConfig=NETWORK),
    ]
    assert len({base.digest, *(s.digest for s in others)}) == 5


def test_the_content_never_shows_in_a_repr() -> None:
    s = seed(userData=USER_DATA, metaData={"k": "TOP-SECRET-123"}, networkConfig=NETWORK)
    assert "TOP-SECRET" not in repr(s)
    assert s == dataclasses.replace(s, user_data="something else")  # compared by digest only


# --- validation: the manifest -> the model -----------------------------------------------------


def desired(name: str = "web-01", **spec: Any) -> DesiredVM:
    data = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine", "metadata": {"name": name},
            "spec": {"vcpus": 1, "memory": "64MiB", **spec}}
    validated = validate([Document(f"manifests/{name}.yaml", f"{name}.yaml", 0, data,
                                   positions={})])
    assert not validated.problems, [str(p) for p in validated.problems]
    return validated.vms[0]


def test_applied_record_holds_the_hash_only() -> None:
    want = desired(cloudInit={"userData": USER_DATA, "networkConfig": NETWORK})
    assert want.spec.cloud_init is not None
    assert want.applied["cloudInit"] == want.spec.cloud_init.digest
    assert "TOP-SECRET" not in repr(want.applied) and "TOP-SECRET" not in repr(want)
    assert want.spec_hash != desired(cloudInit={"userData": "#cloud-config\n"}).spec_hash


def test_without_cloud_init_the_record_and_hash_are_as_before() -> None:
    want = desired()
    assert want.spec.cloud_init is None and "cloudInit" not in want.applied


def test_seed_lives_in_the_pool_of_the_first_disk_or_default() -> None:
    disks = [{"name": "root", "size": "1GiB", "pool": "fast"},
             {"name": "data", "size": "1GiB", "pool": "slow"}]
    assert desired(disks=disks, cloudInit={}).spec.cloud_init.pool == "fast"  # type: ignore[union-attr]
    assert desired(cloudInit={}).spec.cloud_init.pool == "default"  # type: ignore[union-attr]


def test_a_disk_named_cidata_is_refused_next_to_cloud_init() -> None:
    data = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine",
            "metadata": {"name": "web-01"},
            "spec": {"vcpus": 1, "memory": "64MiB", "cloudInit": {},
                     "disks": [{"name": "cidata", "size": "1GiB"}]}}
    validated = validate([Document("m.yaml", "m.yaml", 0, data, positions={})])
    assert [p.field for p in validated.problems] == ["spec.disks[0].name"]
    assert "cloud-init seed" in validated.problems[0].message


# --- domain XML ----------------------------------------------------------------------------------


def _mark(want: DesiredVM) -> Mark:
    return Mark(want.source.relative, want.spec_hash, None, want.applied)


def _seeds(root: Any) -> list[Any]:
    return [d for d in root.iterfind("devices/disk") if d.get("device") == "cdrom"]


def test_domain_gets_the_seed_as_a_read_only_sata_cdrom_and_reads_it_back() -> None:
    want = desired(disks=[{"name": "root", "size": "1GiB", "bus": "sata"}],
                   cloudInit={"userData": USER_DATA})
    xml = domainxml.build_domain(want.spec, domain_type="kvm", mark=_mark(want))
    assert "TOP-SECRET" not in xml
    root = xmlcommon.parse(xml)
    (cdrom,) = _seeds(root)
    assert cdrom.get("type") == "volume"
    assert cdrom.find("source").attrib == {"pool": "default", "volume": "web-01-cidata"}
    assert cdrom.find("target").attrib == {"dev": "sdb", "bus": "sata"}
    assert cdrom.find("readonly") is not None
    volumes = {("default", "web-01-root"): 1 << 30, ("default", "web-01-cidata"): 67584}
    spec = domainxml.read_spec(root, running=True, autostart=False, volumes=volumes,
                               applied=want.applied)
    assert [d.name for d in spec.disks] == ["root"]  # the CD-ROM is not a disk
    assert spec.cloud_init == want.spec.cloud_init
    # the seed volume gone: content unknown, so it is rebuilt
    del volumes[("default", "web-01-cidata")]
    spec = domainxml.read_spec(root, running=True, autostart=False, volumes=volumes,
                               applied=want.applied)
    assert spec.cloud_init is not None and spec.cloud_init.digest == ""


def test_edit_config_attaches_keeps_and_detaches_the_seed_only() -> None:
    plain = desired(disks=[{"name": "root", "size": "1GiB"}])
    root = xmlcommon.parse(domainxml.build_domain(plain.spec, domain_type="kvm",
                                                  mark=_mark(plain)))
    hand_cdrom = xmlcommon.parse("<disk type='file' device='cdrom'><source file='/x.iso'/>"
                                 "<target dev='sda' bus='sata'/><readonly/></disk>")
    root.find("devices").append(hand_cdrom)
    xml = domainxml._to_string(root)

    with_seed = desired(disks=[{"name": "root", "size": "1GiB"}],
                        cloudInit={"userData": USER_DATA})
    edited = domainxml.edit_config(xml, with_seed.spec, mark=_mark(with_seed))
    cdroms = _seeds(xmlcommon.parse(edited))
    assert [c.find("target").get("dev") for c in cdroms] == ["sda", "sdb"]
    assert cdroms[1].find("source").get("volume") == "web-01-cidata"
    assert domainxml.edit_config(edited, with_seed.spec, mark=_mark(with_seed)) == edited

    removed = domainxml.edit_config(edited, plain.spec, mark=_mark(plain))
    cdroms = _seeds(xmlcommon.parse(removed))
    assert [c.find("source").get("file") for c in cdroms] == ["/x.iso"]
    assert [d.find("source").get("volume") for d in xmlcommon.parse(removed).iterfind(
        "devices/disk[@device='disk']")] == ["web-01-root"]


def test_seed_ejected_xml_has_no_medium() -> None:
    want = desired(cloudInit={})
    root = xmlcommon.parse(domainxml.build_domain(want.spec, domain_type="kvm",
                                                  mark=_mark(want)))
    ejected = xmlcommon.parse(devicexml.seed_ejected_xml(root, "web-01") or "")
    assert ejected.get("device") == "cdrom" and ejected.find("source") is None
    assert ejected.find("target").get("dev") == "sda"


# --- the diff ------------------------------------------------------------------------------------


def live(want: DesiredVM, *, cloud_init: Any = "same", running: bool = True,
         recorded: DesiredVM | None = None) -> LiveVM:
    config = want.spec if cloud_init == "same" else dataclasses.replace(want.spec,
                                                                        cloud_init=cloud_init)
    config = dataclasses.replace(config, labels=())
    record = recorded or want
    v = config
    return LiveVM(name=v.name, uuid="u", running=running,
                  state="running" if running else "shut off", domain_id=1 if running else None,
                  config=config, mark=_mark(record),
                  live_vcpus=v.vcpus if running else None,
                  live_max_vcpus=v.max_vcpus if running else None,
                  live_memory=v.memory if running else None,
                  live_max_memory=v.max_memory if running else None)


OLD = {"userData": "#cloud-config\n"}
NEW = {"userData": USER_DATA}


def rows(want: DesiredVM, have: LiveVM) -> list[tuple[str, str | None, str | None, str]]:
    action = diff.update(want, have)
    changes = [render.change_json(s) for s in action.steps]
    return [(c["field"], c["old"], c["new"], c["mode"]) for c in changes]  # type: ignore[misc]


def test_no_change_when_the_recorded_hash_matches() -> None:
    want = desired(cloudInit=NEW)
    assert diff.update(want, live(want)).steps == ()


@pytest.mark.parametrize(("running", "policy", "mode", "restart"), [
    (True, "live", Effect.RESTART, False),
    (True, "restart", Effect.RESTART, True),
    (False, "live", Effect.CONFIG, False),
])
def test_changed_content_needs_a_restart(running: bool, policy: str, mode: Effect,
                                         restart: bool) -> None:
    old = desired(cloudInit=OLD, updatePolicy=policy, state="running" if running else "stopped")
    want = desired(cloudInit=NEW, updatePolicy=policy, state="running" if running else "stopped")
    have = live(old, running=running)
    action = diff.update(want, have)
    assert [(c.op, c.old, c.new, c.effect) for c in action.steps] == [
        (Op.WRITE_SEED, old.spec.cloud_init.digest, want.spec.cloud_init.digest, mode)]  # type: ignore[union-attr]
    assert action.restart is restart
    text = render.describe(action)
    assert "TOP-SECRET" not in text
    if running and not restart:
        assert text == (f"cloudInit {old.spec.cloud_init.digest} -> "  # type: ignore[union-attr]
                        f"{want.spec.cloud_init.digest} needs a restart "  # type: ignore[union-attr]
                        "(updatePolicy: live) -- pending restart")
        assert action.pending_restart


def test_added_removed_unknown_and_moved_seeds() -> None:
    plain, want = desired(), desired(cloudInit=NEW)
    digest = want.spec.cloud_init.digest  # type: ignore[union-attr]
    assert rows(want, live(plain)) == [("cloudInit", None, digest, "restart")]
    assert rows(plain, live(want)) == [("cloudInit", digest, None, "live")]
    stopped = desired(state="stopped")
    assert rows(stopped, live(want, running=False)) == [("cloudInit", digest, None, "config")]
    unknown = cloudinit.CloudInit(digest="", pool="default")
    assert rows(want, live(want, cloud_init=unknown)) == [
        ("cloudInit", "unknown", digest, "restart")]
    elsewhere = dataclasses.replace(want.spec.cloud_init, pool="other")  # type: ignore[arg-type]
    assert rows(want, live(want, cloud_init=elsewhere)) == [
        ("cloudInit pool", "other", "default", "restart")]


def test_destroy_says_the_seed_volume_goes_with_the_vm() -> None:
    want = desired(disks=[{"name": "root", "size": "1GiB"}], cloudInit=NEW)
    plan = diff.plan([], [live(want)], Guards(allow_empty=True))
    assert words.reason_text(plan.actions[0]) == ("volumes retained: web-01-root; "
                                      "seed volume deleted: web-01-cidata")
