"""A "not found" counts as done only for the object it is about: deleting a volume whose pool
is gone is not a deleted volume (its file is still on disk), so a destroy that needs it fails
and keeps the domain, marked and visible, instead of reporting it converged."""

from __future__ import annotations

import libvirt
import pytest
from conftest import apply, vm_manifest, write_manifest

from reconciler.adapters.libvirt import Libvirt
from reconciler.core.errors import NotFoundError, PermanentError


def test_deleting_a_volume_of_a_missing_pool_is_not_done(host):
    hv = Libvirt(host.uri)
    try:
        with pytest.raises(PermanentError, match="pool does not exist") as raised:
            hv.delete_volume(f"{host.prefix}nopool", f"{host.prefix}vm-root")
        assert not isinstance(raised.value, NotFoundError)
        with pytest.raises(NotFoundError):  # the pool is there, the volume is not: done
            hv.delete_volume("default", f"{host.prefix}vm-root")
    finally:
        hv.close()


def test_a_destroy_whose_volume_pool_is_gone_keeps_the_domain(host, tmp_path):
    pool_name, name = f"{host.prefix}pool", f"{host.prefix}gone"
    (tmp_path / "pool").mkdir()
    pool = host.conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{pool_name}</name><target><path>{tmp_path / 'pool'}</path>"
        "</target></pool>", 0)
    pool.create(0)
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", vm_manifest(name, state="stopped", disks=f"""
        - {{name: data, size: 8MiB, pool: {pool_name}, reclaim: delete}}
    """))
    assert apply(host, folder).code == 0
    pool.destroy()  # someone removes the pool; the volume's file stays in its directory
    pool.undefine()
    (folder / "vm.yaml").unlink()
    r = apply(host, folder, "--allow-empty")
    assert r.code == 1
    assert f"{name}: destroy failed: deleting volume {name}-data in pool {pool_name}: the pool " \
           "does not exist (any more); the volume was not deleted" in r.stdout
    assert host.exists(name)  # still marked, still destroyed by a later run
    assert (tmp_path / "pool" / f"{name}-data").exists()
    host.domain(name).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
