"""The plan cache (reconciler.cache): a warm plan is the cold plan, whatever changed in between."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path

import libvirt
import pytest
from conftest import run_cli, vm_manifest, write_manifest

from reconciler import pipeline
from reconciler.adapters import cache
from reconciler.adapters import manifests as loader

URI = "test:///default"


def plan_json(m: Path, codes: tuple[int, ...] = (0, 2)) -> dict:
    result = run_cli("plan", "--connect", URI, "--format", "json", m)
    assert result.code in codes, result.stdout + result.stderr
    return json.loads(result.stdout)


def apply(m: Path, state: Path) -> None:
    result = run_cli("apply", "--yes", "--connect", URI, "--state-dir", state, m)
    assert result.code == 0, result.stdout + result.stderr


def entries(path: Path) -> dict:
    """A cache table's entries (after its header and MAC)."""
    data = path.read_bytes()
    assert data.startswith(cache._MAGIC)
    payload = data[len(cache._MAGIC) + cache._MAC_SIZE:]
    code, keys, start = cache.unpack_keys(payload)
    assert code == cache.code_digest()
    table = pickle.loads(payload[start:])
    assert tuple(table) == keys
    return table


def watch_parsing(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """From now on, the name of each manifest file parsed (not taken from the cache)."""
    parsed: list[str] = []
    real = loader.load_file

    def spy(path, root, data=None):  # type: ignore[no-untyped-def]
        parsed.append(path.name)
        return real(path, root, data)

    monkeypatch.setattr(loader, "load_file", spy)
    return parsed


def cold_plan(m: Path, monkeypatch, codes: tuple[int, ...] = (0, 2)) -> dict:  # type: ignore[no-untyped-def]
    with monkeypatch.context() as patch:
        patch.setenv("RECONCILER_CACHE_DIR", "")
        return plan_json(m, codes)


def test_a_warm_plan_is_the_cold_plan(testdrv, prefix, tmp_path, own_cache, monkeypatch):
    m, state = tmp_path / "m", tmp_path / "s"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a", disks="- {name: root, size: 1MiB, "
                                            "pool: default-pool}"))
    write_manifest(m, "b.yaml", vm_manifest(f"{prefix}b", state="stopped"))
    apply(m, state)
    first = plan_json(m)  # fills the cache
    assert cache.table_file(own_cache, "domain").exists()
    assert plan_json(m) == first == cold_plan(m, monkeypatch)
    assert first["summary"]["update"] == 0 and first["summary"]["create"] == 0

    # A manifest edited: the warm plan sees it.
    write_manifest(m, "b.yaml", vm_manifest(f"{prefix}b", state="stopped", vcpus=2,
                                            max_vcpus=2))
    warm = plan_json(m)
    assert warm == cold_plan(m, monkeypatch)
    assert warm["summary"]["update"] == 1

    # A domain changed by hand: the warm plan sees it too.
    dom = testdrv.lookupByName(f"{prefix}a")
    dom.setVcpusFlags(1, libvirt.VIR_DOMAIN_AFFECT_LIVE)  # no change: same XML
    dom.setAutostart(1)
    warm = plan_json(m)
    assert warm == cold_plan(m, monkeypatch)
    changes = [c for a in warm["actions"] if a["name"] == f"{prefix}a" for c in a["changes"]]
    assert [c["field"] for c in changes] == ["autostart"]


def test_a_broken_cache_is_ignored_and_rewritten(testdrv, prefix, tmp_path, own_cache):
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    own_cache.mkdir(mode=0o700)
    broken = cache.table_file(own_cache, "file")
    broken.write_bytes(b"not a pickle")
    broken.chmod(0o600)
    assert plan_json(m)["summary"]["create"] == 1
    assert len(entries(broken)) == 1


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(_Boom.witness),))

    witness = Path()


def _poison(path: Path, mac: bytes) -> None:
    payload = cache.pack(cache.code_digest(), {_Boom(): "x"})  # unpickled with the keys
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(cache._MAGIC + mac + payload)
    path.chmod(0o600)


def _signed(path: Path, entries: dict) -> None:
    """A table file with a valid MAC, as this user's reconciler would write it."""
    payload = cache.pack(cache.code_digest(), entries)
    path.write_bytes(cache._MAGIC + cache._mac(cache.key_file().read_bytes(), payload) + payload)


def test_a_cache_file_this_user_did_not_write_is_never_unpickled(testdrv, prefix, tmp_path,
                                                                 own_cache):
    # Unpickling runs code. A file copied in (a CI cache restore) has the right owner and mode
    # but not a MAC made with this user's key, kept outside the cache folder.
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    _Boom.witness = tmp_path / "pwned"
    _poison(cache.table_file(own_cache, "file"), b"\0" * cache._MAC_SIZE)
    assert plan_json(m)["summary"]["create"] == 1
    assert not _Boom.witness.exists()


def test_a_cache_file_others_could_write_is_never_loaded(testdrv, prefix, tmp_path, own_cache):
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    plan_json(m)  # makes the key
    _Boom.witness = tmp_path / "pwned"
    path = cache.table_file(own_cache, "file")
    _signed(path, {_Boom(): "x"})  # unpickled with the keys
    path.chmod(0o666)  # a valid MAC, but anyone could have written it
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a", vcpus=2, max_vcpus=2))  # a miss
    assert plan_json(m)["summary"]["create"] == 1
    assert not _Boom.witness.exists()


def test_a_cache_folder_reached_through_a_link_is_not_used(testdrv, prefix, tmp_path,
                                                           monkeypatch):
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "link"))
    assert plan_json(m)["summary"]["create"] == 1
    assert list((tmp_path / "real").iterdir()) == []


def test_an_empty_cache_dir_setting_turns_it_off(testdrv, prefix, tmp_path, own_cache,
                                                 monkeypatch):
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    monkeypatch.setenv("RECONCILER_CACHE_DIR", "")
    assert plan_json(m)["summary"]["create"] == 1
    assert not own_cache.exists()


def test_an_edit_re_reads_only_the_file_it_touched(testdrv, prefix, tmp_path, own_cache,
                                                    monkeypatch):
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    write_manifest(m, "b.yaml", vm_manifest(f"{prefix}b"))
    plan_json(m)
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a", vcpus=2, max_vcpus=2))
    parsed = watch_parsing(monkeypatch)
    warm = plan_json(m)
    assert parsed == ["a.yaml"]
    assert warm == cold_plan(m, monkeypatch)
    assert len(entries(cache.table_file(own_cache, "file"))) == 2  # a.yaml's old entry is gone


def test_the_same_manifests_seen_from_another_folder_name_their_files_right(
        testdrv, prefix, tmp_path, own_cache, monkeypatch):
    # Messages show paths relative to the working directory: not the same cache entry.
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a", memory="1GB"))
    monkeypatch.chdir(tmp_path)
    assert run_cli("plan", "--connect", URI, "m").stderr.startswith("m/a.yaml:7:3:")
    monkeypatch.chdir(m)
    assert run_cli("plan", "--connect", URI, ".").stderr.startswith("a.yaml:7:3:")


def test_what_the_cache_is_keyed_by_shows_in_a_warm_plan(testdrv, prefix, tmp_path, monkeypatch):
    # Each input a cached result depends on, changed in turn: the warm plan follows.
    m, state = tmp_path / "m", tmp_path / "s"
    write_manifest(m, "a.yaml", vm_manifest(
        f"{prefix}a", disks="- {name: root, size: 1MiB, pool: default-pool}"))
    apply(m, state)
    before = plan_json(m)
    assert before == cold_plan(m, monkeypatch)
    dom = testdrv.lookupByName(f"{prefix}a")
    dom.suspend()  # the state
    paused = plan_json(m)
    assert paused != before and paused == cold_plan(m, monkeypatch)
    dom.resume()
    assert plan_json(m) == before
    testdrv.storagePoolLookupByName("default-pool").storageVolLookupByName(
        f"{prefix}a-root").delete(0)  # a volume's size (here: gone)
    gone = plan_json(m, codes=(1,))  # refused: "restore it, or remove the disk"
    assert gone != before and gone == cold_plan(m, monkeypatch, codes=(1,))


def test_the_storage_roots_are_part_of_the_key(testdrv, prefix, tmp_path, monkeypatch):
    m = tmp_path / "m"
    write_manifest(m, "p.yaml", f"""\
        apiVersion: reconciler/v1
        kind: StoragePool
        metadata:
          name: {prefix}pool
        spec:
          type: dir
          path: /srv/vms/{prefix}pool
        """)
    config = tmp_path / "config.yaml"
    config.write_text("storageRoots: [/srv/vms]\n")
    assert run_cli("validate", "--config", config, m).code == 0
    assert run_cli("plan", "--connect", URI, "--config", config, m).code == 0
    config.write_text("storageRoots: [/var/lib/libvirt/images]\n")
    r = run_cli("plan", "--connect", URI, "--config", config, m)
    assert r.code == 1 and "is not below an allowed storage root" in r.stderr


def test_a_failed_grow_is_planned_again(testdrv, prefix, tmp_path):
    # test:///default cannot resize a volume, so every grow fails. The recorded size must not
    # claim the new size (a stopped VM's volume whose recorded size is the manifest's is not
    # read again): the grow stays planned.
    m, state = tmp_path / "m", tmp_path / "s"
    write_manifest(m, "a.yaml", vm_manifest(
        f"{prefix}a", state="stopped", disks="- {name: root, size: 1MiB, pool: default-pool}"))
    apply(m, state)
    write_manifest(m, "a.yaml", vm_manifest(
        f"{prefix}a", state="stopped", disks="- {name: root, size: 2MiB, pool: default-pool}"))
    r = run_cli("apply", "--yes", "--connect", URI, "--state-dir", state, m)
    assert r.code == 1
    for _ in range(2):
        r = run_cli("plan", "--connect", URI, "--detailed-exitcode", m)
        assert r.code == 2 and "disk root 1MiB -> 2MiB" in r.stdout


def test_a_disk_named_cidata_is_read_like_any_disk(testdrv, prefix, tmp_path):
    # Only a cloud-init seed CD-ROM's size is never read; a disk of that name is a disk.
    m, state = tmp_path / "m", tmp_path / "s"
    write_manifest(m, "a.yaml", vm_manifest(
        f"{prefix}a", state="stopped", disks="- {name: cidata, size: 2MiB, pool: default-pool}"))
    apply(m, state)
    write_manifest(m, "a.yaml", vm_manifest(
        f"{prefix}a", state="stopped", disks="- {name: cidata, size: 1MiB, pool: default-pool}"))
    r = run_cli("plan", "--connect", URI, "--detailed-exitcode", m)
    assert r.code == 1 and "disk cidata 2MiB -> 1MiB refused" in r.stdout


def test_the_daemon_s_memory_cache_parses_only_what_changed(testdrv, prefix, tmp_path,
                                                           own_cache, monkeypatch):
    from reconciler import pipeline
    from reconciler.adapters.libvirt import Libvirt

    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    write_manifest(m, "b.yaml", vm_manifest(f"{prefix}b"))
    memo = cache.Cache(None, memory=True)
    parsed = watch_parsing(monkeypatch)
    hv = Libvirt(URI)
    try:
        def reconcile() -> tuple:
            inputs = loader.load_desired(m, memo=memo)
            live = pipeline.read_state(hv, "default", memo=memo)
            memo.save()
            return inputs, live

        first = reconcile()
        second = reconcile()
        write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a", vcpus=2, max_vcpus=2))
        third = reconcile()
    finally:
        hv.close()
    assert parsed == ["a.yaml", "b.yaml", "a.yaml"]
    assert second == first and third[0] != first[0]
    assert [vm.spec.vcpus for vm in third[0].vms] == [2, 1]
    assert not own_cache.exists()  # never written


def test_a_domain_of_another_instance_plans_the_same_warm_or_cold(testdrv, prefix, tmp_path,
                                                                  monkeypatch):
    m, other, state = tmp_path / "m", tmp_path / "other", tmp_path / "s"
    write_manifest(other, "o.yaml", vm_manifest(f"{prefix}o"))
    with monkeypatch.context() as patch:
        patch.setenv("RECONCILER_INSTANCE", f"{prefix}other")
        apply(other, tmp_path / "s2")
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    apply(m, state)
    warm = plan_json(m)
    assert warm == plan_json(m) == cold_plan(m, monkeypatch)


def test_cloud_init_data_is_never_written_to_the_cache(testdrv, prefix, tmp_path, own_cache):
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(
        f"{prefix}a", extra="cloudInit: {userData: '#cloud-config password: hunter2'}"))
    write_manifest(m, "b.yaml", vm_manifest(f"{prefix}b"))
    plan_json(m)
    written = b"".join(path.read_bytes() for path in own_cache.iterdir())
    assert b"hunter2" not in written
    assert [key[1] for key in entries(cache.table_file(own_cache, "file"))] == ["b.yaml"]


def test_cache_files_reached_through_links_are_not_loaded(testdrv, prefix, tmp_path, own_cache,
                                                          monkeypatch):
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    plan_json(m)
    for table in ("file", "manifests"):
        path = cache.table_file(own_cache, table)
        copy = path.with_suffix(".copy")
        path.rename(copy)
        path.symlink_to(copy)
    parsed = watch_parsing(monkeypatch)
    plan_json(m)
    assert parsed == ["a.yaml"]


def test_a_cache_key_that_is_short_or_readable_by_others_turns_the_cache_off(
        testdrv, prefix, tmp_path, own_cache):
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    key = cache.key_file()
    key.parent.mkdir(parents=True, mode=0o700)
    key.write_bytes(b"short")
    key.chmod(0o600)
    plan_json(m)
    assert not own_cache.exists() or list(own_cache.iterdir()) == []
    key.write_bytes(b"k" * 32)
    key.chmod(0o644)
    plan_json(m)
    assert not own_cache.exists() or list(own_cache.iterdir()) == []
    key.chmod(0o600)
    plan_json(m)
    assert cache.table_file(own_cache, "file").exists()


def test_the_cache_is_not_made_in_another_user_s_folder(tmp_path, monkeypatch):
    # root with a user's HOME (sudo -E): nothing root-owned is left in that home.
    if os.geteuid() != 0:
        pytest.skip("needs root, to give the folder to another user")
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(home / ".cache" / "reconciler"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    assert not cache.Cache(cache.default_dir())
    assert list(home.iterdir()) == []


def test_a_plan_with_nothing_to_do_is_taken_whole_and_only_while_nothing_changed(
        testdrv, prefix, tmp_path, own_cache, monkeypatch):
    m, state = tmp_path / "m", tmp_path / "s"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    write_manifest(m, "n.yaml", f"apiVersion: reconciler/v1\nkind: Network\n"
                                f"metadata:\n  name: {prefix}net\n")
    apply(m, state)
    steady = plan_json(m)  # computed, and kept: it has nothing to do
    assert steady["actions"] == [] and len(entries(cache.table_file(own_cache, "plan"))) == 1
    computed: list[int] = []
    real = pipeline.compute
    monkeypatch.setattr(pipeline, "compute", lambda *a: computed.append(1) or real(*a))
    table = cache.table_file(own_cache, "plan")
    written = table.stat()
    assert plan_json(m) == steady and computed == []  # taken whole
    after = table.stat()  # and not written again
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)

    # The live side of the key, beyond the domains: a network removed by hand.
    net = testdrv.networkLookupByName(f"{prefix}net")
    net.destroy()
    net.undefine()
    gone = plan_json(m)
    assert computed == [1]
    assert [(a["kind"], a["name"]) for a in gone["actions"]] == [("create", f"{prefix}net")]
    assert gone == cold_plan(m, monkeypatch)


def test_a_table_without_the_key_sought_is_not_unpickled(testdrv, prefix, tmp_path, own_cache,
                                                         monkeypatch):
    # After an edit the whole-set table misses: only its keys are read, not its (large) entries.
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    plan_json(m)  # makes the key
    _Boom.witness = tmp_path / "unpickled"
    path = cache.table_file(own_cache, "manifests")
    _signed(path, {b"another key": _Boom()})
    assert plan_json(m)["summary"]["create"] == 1
    assert not _Boom.witness.exists()
    assert len(entries(path)) == 1  # rewritten with this run's entry
    cache.table_file(own_cache, "file").unlink()
    parsed = watch_parsing(monkeypatch)
    assert plan_json(m)["summary"]["create"] == 1
    assert parsed == []  # that entry is found: the whole set comes from it


def test_another_instance_is_not_given_the_owner_s_cached_plan(testdrv, prefix, tmp_path,
                                                               own_cache):
    # A network-only set: no domain, so only the instance tells the two plans apart.
    m = tmp_path / "m"
    write_manifest(m, "n.yaml", f"apiVersion: reconciler/v1\nkind: Network\n"
                                f"metadata:\n  name: {prefix}net\n")
    apply(m, tmp_path / "s")
    assert plan_json(m)["actions"] == []  # cached: nothing to do
    result = run_cli("plan", "--connect", URI, "--format", "json", "--instance",
                     f"{prefix}other", m)
    assert result.code == 1, result.stderr  # a conflict
    other = json.loads(result.stdout)["actions"]
    assert [(a["kind"], a["name"]) for a in other] == [("blocked", f"{prefix}net")]


def test_networks_and_pools_are_parsed_once_and_again_when_their_definition_changes(
        monkeypatch):
    """A network's or pool's XML is parsed once (``assemble.live_networks``, ``live_pools``):
    read again with other ports or other sizes it comes from the cache; with another
    definition it is parsed again, and the model is the fresh one."""
    from reconciler.adapters import assemble
    from reconciler.core import observe
    from reconciler.core.observe import RawNetwork, RawPool

    conn = libvirt.open(f"test://{Path(__file__).parents[2] / 'examples' / 'test-node.xml'}")
    net = conn.networkLookupByName("default")
    pool = conn.storagePoolLookupByName("default")
    raw_net = RawNetwork("default", True, True, True, net.XMLDesc(0), ("port-1",), net.XMLDesc(0))
    raw_pool = RawPool("default", True, True, pool.XMLDesc(0), 1, 1, 1, ("a.qcow2",))
    memo = cache.Cache(None, memory=True)
    first_net, = assemble.live_networks([raw_net], memo)
    first_pool, = assemble.live_pools([raw_pool], memo)
    memo.save()  # the run ends (the daemon's cache in memory: the next run starts)
    parsed: list[str] = []
    for name in ("network_xml", "pool_xml"):
        real = getattr(observe, name)
        monkeypatch.setattr(observe, name,
                            lambda raw, real=real, name=name: parsed.append(name) or real(raw))

    sized = pool.XMLDesc(0).replace("<available unit='bytes'>", "<available unit='bytes'>1")
    assert sized != pool.XMLDesc(0)
    again_net, = assemble.live_networks([raw_net._replace(ports=("port-2",))], memo)
    again_pool, = assemble.live_pools([raw_pool._replace(xml=sized, available=2)], memo)
    assert parsed == []
    assert again_net == dataclasses.replace(first_net, ports=("port-2",))
    assert again_pool == first_pool

    memo.save()
    # whatever the parse reads is in the key: each of these is parsed again
    moved = pool.XMLDesc(0).replace("<path>", "<path>/srv")
    renamed = net.XMLDesc(0).replace("<bridge name='", "<bridge name='x")
    other_net, = assemble.live_networks([raw_net._replace(xml=renamed)], memo)
    other_pool, = assemble.live_pools([raw_pool._replace(xml=moved)], memo)
    assert parsed == ["network_xml", "pool_xml"]
    assert other_pool.config.path.startswith("/srv") and other_net.config != first_net.config
    running, = assemble.live_networks([raw_net._replace(live_xml=renamed)], memo)
    assert running.running is not None and running.running.bridge == "xvirbr0"
    assert running.config == first_net.config  # the persistent definition is unchanged
    manual, = assemble.live_networks([raw_net._replace(autostart=False)], memo)
    assert manual.config.autostart is False
    typed = pool.XMLDesc(0).replace("<pool type='dir'>", "<pool type='fs'>")
    assert assemble.live_pools([raw_pool._replace(xml=typed)], memo)[0].config.type == "fs"
    assert assemble.live_pools([raw_pool._replace(autostart=False)], memo)[0].config.autostart \
        is False
    assert parsed == ["network_xml", "pool_xml"] + ["network_xml"] * 2 + ["pool_xml"] * 2
