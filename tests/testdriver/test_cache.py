"""The plan cache (reconciler.cache): a warm plan is the cold plan, whatever changed in between."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import libvirt
from conftest import run_cli, vm_manifest, write_manifest

from reconciler import cache
from reconciler.manifests import loader

URI = "test:///default"


def plan_json(m: Path) -> dict:
    result = run_cli("plan", "--connect", URI, "--format", "json", m)
    assert result.code in (0, 2), result.stdout + result.stderr
    return json.loads(result.stdout)


def apply(m: Path, state: Path) -> None:
    result = run_cli("apply", "--yes", "--connect", URI, "--state-dir", state, m)
    assert result.code == 0, result.stdout + result.stderr


def cold_plan(m: Path, monkeypatch) -> dict:  # type: ignore[no-untyped-def]
    with monkeypatch.context() as patch:
        patch.setenv("RECONCILER_CACHE_DIR", "")
        return plan_json(m)


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
    with broken.open("rb") as file:
        code, entries = pickle.load(file)
    assert code == cache.code_digest() and len(entries) == 1


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(_Boom.witness),))

    witness = Path()


def test_a_cache_file_others_could_write_is_never_loaded(testdrv, prefix, tmp_path, own_cache):
    # Unpickling runs code: a group- or world-writable file is not trusted.
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a"))
    _Boom.witness = tmp_path / "pwned"
    own_cache.mkdir(mode=0o700)
    poisoned = cache.table_file(own_cache, "file")
    poisoned.write_bytes(pickle.dumps((cache.code_digest(), _Boom())))
    poisoned.chmod(0o666)
    assert plan_json(m)["summary"]["create"] == 1
    assert not _Boom.witness.exists()


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
    parsed: list[str] = []
    real = loader.load_file

    def spy(path, root, data=None):  # type: ignore[no-untyped-def]
        parsed.append(path.name)
        return real(path, root, data)

    monkeypatch.setattr(loader, "load_file", spy)
    warm = plan_json(m)
    assert parsed == ["a.yaml"]
    monkeypatch.setattr(loader, "load_file", real)
    assert warm == cold_plan(m, monkeypatch)
    with cache.table_file(own_cache, "file").open("rb") as file:
        _, entries = pickle.load(file)
    assert len(entries) == 2  # the first version of a.yaml is gone


def test_the_same_manifests_seen_from_another_folder_name_their_files_right(
        testdrv, prefix, tmp_path, own_cache, monkeypatch):
    # Messages show paths relative to the working directory: not the same cache entry.
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", vm_manifest(f"{prefix}a", memory="1GB"))
    monkeypatch.chdir(tmp_path)
    assert run_cli("plan", "--connect", URI, "m").stderr.startswith("m/a.yaml:7:3:")
    monkeypatch.chdir(m)
    assert run_cli("plan", "--connect", URI, ".").stderr.startswith("a.yaml:7:3:")
