"""Every YAML example in the README is what it claims to be: a manifest that `reconciler
validate` accepts (with the README's own config where it needs one), a part of a manifest that
is valid inside a VirtualMachine, or a config file the config loader reads."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from reconciler.adapters import config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```yaml\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
CONFIG_KEYS = {f.name for f in dataclasses.fields(config.Config)}
BASE_VM = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine",
           "metadata": {"name": "readme"}, "spec": {"vcpus": 1, "memory": "64MiB"}}


def kind_of_block(text: str) -> str:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs), text
    if all("apiVersion" in d for d in docs):
        return "manifest"
    if len(docs) == 1 and set(docs[0]) <= {"metadata", "spec"}:
        return "part"
    if len(docs) == 1 and set(docs[0]) <= CONFIG_KEYS:
        return "config"
    raise AssertionError(f"a README YAML block this test does not know how to check:\n{text}")


def merged(base: dict, part: dict) -> dict:  # type: ignore[type-arg]
    out = dict(base)
    for key, value in part.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def readme_config(tmp_path: Path) -> Path:
    """The config the README tells a user to write for pools (`storageRoots` of its own)."""
    (block,) = [b for b in BLOCKS if b.startswith("# /etc/reconciler/config.yaml")]
    path = tmp_path / "config.yaml"
    path.write_text(block)
    return path


def test_the_readme_has_examples_of_each_sort() -> None:
    sorts = [kind_of_block(b) for b in BLOCKS]
    assert sorts.count("manifest") >= 2 and "part" in sorts and "config" in sorts


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_readme_yaml_block_is_valid(index: int, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    block = BLOCKS[index]
    sort = kind_of_block(block)
    if sort == "config":
        (tmp_path / "c.yaml").write_text(block)
        config.load(tmp_path / "c.yaml")  # raises with the problem
        return
    text = block if sort == "manifest" else yaml.safe_dump(merged(BASE_VM, yaml.safe_load(block)))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "example.yaml").write_text(text)
    result = run_cli("validate", "--config", str(readme_config(tmp_path)), "m")
    assert (result.code, result.stderr) == (0, ""), result.stdout
    assert "valid" in result.stdout


def test_the_pool_example_is_not_inside_the_default_pool() -> None:
    # `virsh vol-list default` would list a pool inside /var/lib/libvirt/images as a volume.
    pools = [d for b in BLOCKS for d in yaml.safe_load_all(b)
             if isinstance(d, dict) and d.get("kind") == "StoragePool"]
    assert pools
    for pool in pools:
        assert not pool["spec"]["path"].startswith("/var/lib/libvirt/images"), pool
    # and it needs the README's config: under the default storageRoots it is refused
    roots = yaml.safe_load(
        next(b for b in BLOCKS if b.startswith("# /etc/reconciler/config.yaml")))["storageRoots"]
    assert all(any(p["spec"]["path"].startswith(root + "/") for root in roots) for p in pools)
