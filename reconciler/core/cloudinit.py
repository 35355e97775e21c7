"""cloud-init NoCloud seeds: manifest content -> seed files -> ISO image, and their short hash.

No libvirt, no files. The seed is an ISO 9660 image labelled ``cidata`` with Joliet and Rock Ridge
(so the file names are exactly ``user-data``, ``meta-data`` and ``network-config``), the layout
cloud-init's NoCloud datasource reads at boot.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping

from reconciler.core.model.vm import CloudInit, VMSpec, volume_name

LABEL = "cidata"
SEED_DISK = "cidata"  # the seed volume is <vm>-cidata, so no disk may take this name
DIGEST_LENGTH = 8

# File name in the ISO 9660 directory (8.3 upper case), and the exact name Joliet and Rock Ridge
# give it.
_NAMES = {"user-data": "USERDATA", "meta-data": "METADATA", "network-config": "NETCONF"}


def seed_volume(vm: str) -> str:
    return volume_name(vm, SEED_DISK)


def from_manifest(vm: str, data: Mapping[str, object], *, pool: str) -> CloudInit:
    """``spec.cloudInit`` of a valid manifest as a model value, its digest included. Pure."""
    user_data = data.get("userData")
    network_config = data.get("networkConfig")
    meta = data.get("metaData") or {}
    partial = CloudInit(
        digest="", pool=pool,
        user_data=user_data if isinstance(user_data, str) else None,
        meta_data=dict(meta) if isinstance(meta, Mapping) else {},
        network_config=network_config if isinstance(network_config, str) else None,
    )
    return CloudInit(digest=digest(files(vm, partial)), pool=pool, user_data=partial.user_data,
                     meta_data=partial.meta_data, network_config=partial.network_config)


def seed_pool(spec: VMSpec) -> str:
    """The seed lives in the pool of the VM's first disk, or in ``default``. Pure."""
    return spec.disks[0].pool if spec.disks else "default"


def meta_data(vm: str, overrides: Mapping[str, object]) -> dict[str, object]:
    """instance-id and local-hostname default to the VM's name; the manifest's keys win. Pure."""
    return {"instance-id": vm, "local-hostname": vm, **overrides}


def files(vm: str, seed: CloudInit) -> dict[str, bytes]:
    """The seed's files by name. ``network-config`` only when given (and not blank). Pure."""
    import yaml  # not needed by a plan that reads everything from its cache

    out = {
        "user-data": (seed.user_data or "").encode(),
        "meta-data": yaml.safe_dump(meta_data(vm, seed.meta_data), sort_keys=False,
                                    default_flow_style=False, allow_unicode=True).encode(),
    }
    if seed.network_config and seed.network_config.strip():
        out["network-config"] = seed.network_config.encode()
    return out


def digest(seed_files: Mapping[str, bytes]) -> str:
    """A short hash of the files: what the applied record and the plan show, never the content.
    Pure."""
    h = hashlib.sha256()
    for name in sorted(seed_files):
        content = seed_files[name]
        h.update(json.dumps([name, len(content)]).encode())
        h.update(content)
    return h.hexdigest()[:DIGEST_LENGTH]


def seed_iso(seed_files: Mapping[str, bytes]) -> bytes:
    """The NoCloud ISO image of ``seed_files``. Pure but for the build time pycdlib stamps into
    the image (the digest, not the image, is what gets compared)."""
    import pycdlib  # only to build or read an image: `plan` does not load it

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=LABEL, joliet=3, rock_ridge="1.09")
    for name, content in seed_files.items():
        iso.add_fp(io.BytesIO(content), len(content), iso_path=f"/{_NAMES[name]}.;1",
                   rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_iso(image: bytes) -> tuple[str, dict[str, bytes]]:
    """(volume label, files by their Rock Ridge name) of a seed image: for tests and checks."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    try:
        label = iso.pvd.volume_identifier.decode().rstrip()
        out = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            buffer = io.BytesIO()
            iso.get_file_from_iso_fp(buffer, rr_path=f"/{name}")
            out[name] = buffer.getvalue()
        return label, out
    finally:
        iso.close()
