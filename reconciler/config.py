"""The host's config file (/etc/reconciler/config.yaml): optional, every key has a default."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from reconciler.errors import PermanentError

DEFAULT_PATH = Path("/etc/reconciler/config.yaml")


@dataclass(frozen=True)
class Config:
    connect: str = "qemu:///system"
    instance: str = "default"  # several reconcilers on one host: each owns only its own domains
    manifestDir: str = "/etc/reconciler/manifests"
    stateDir: str = "/var/lib/reconciler"
    maxDestroy: int = 5
    parallel: int = 4
    storageRoots: tuple[str, ...] = field(default=("/var/lib/libvirt/images",))


def load(path: Path | None) -> Config:
    """The config at ``path``; a missing default file is fine, a missing named one is not."""
    target = path or DEFAULT_PATH
    if not target.exists():
        if path is not None:
            raise PermanentError(f"{path}: config file not found")
        return Config()
    try:
        data = yaml.safe_load(target.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PermanentError(f"{target}: cannot read config: {exc}") from exc
    if not isinstance(data, dict):
        raise PermanentError(f"{target}: the config must be a mapping")
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PermanentError(f"{target}: unknown key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
    if "storageRoots" in data:
        data["storageRoots"] = tuple(data["storageRoots"])
    return Config(**data)
