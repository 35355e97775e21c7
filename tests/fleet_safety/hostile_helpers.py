"""Helpers of the hostile fleet tests: Host manifests, per-host configs, and test-driver hosts
of our own (a node XML file: its URI opens a fresh host holding exactly what the file says)."""

from __future__ import annotations

from pathlib import Path

from conftest import CliResult, run_cli

from reconciler.core.placement import score

NODE = Path(__file__).resolve().parents[2] / "examples" / "test-node.xml"
URI = "test:///default"  # shared per process: the testdrv fixture keeps it alive


def host_yaml(name: str, uri: str, labels: dict[str, str] | None = None, extra: str = "") -> str:
    text = ["apiVersion: reconciler/v1", "kind: Host", "metadata:", f"  name: {name}"]
    if labels:
        text.append("  labels:")
        text += [f"    {k}: {v}" for k, v in labels.items()]
    text += ["spec:", f'  uri: "{uri}"']
    text += [f"  {line}" for line in extra.splitlines() if line]
    return "\n".join(text) + "\n"


def config(folder: Path, me: str) -> Path:
    """The config of host ``me``: its name, and its state directory (where apply keeps what it
    knows of the fleet; plan reads it there too)."""
    path = folder / f"config-{me}.yaml"
    path.write_text(f"host: {me}\nstateDir: {folder / f'state-{me}'}\n")
    return path


def as_host(folder: Path, me: str, uri: str, command: str, m: Path, *extra: str) -> CliResult:
    """``reconciler COMMAND`` as the fleet host ``me`` reads it (config ``host: me``)."""
    args = [command, "--connect", uri, "--config", config(folder, me)]
    if command == "apply":
        args += ["--yes", "--state-dir", folder / f"state-{me}"]
    r = run_cli(*args, *extra, m)
    print(f"$ {command} as {me} {' '.join(map(str, extra))} -> {r.code}\n{r.stdout}{r.stderr}")
    return r


def node(folder: Path, name: str, *, pool: str = "default-pool", available: str = "64 GiB",
         network: str | None = None, domains: tuple[str, ...] = ()) -> str:
    """A test-driver host of our own: ``test://FILE`` opens a fresh host with a pool (active,
    ``available`` free), optionally an active network, and ``domains`` (domain XML)."""
    amount, unit = available.split()
    net = (f"<network><name>{network}</name><bridge name='hv{abs(hash(network)) % 9999}'/>"
           "</network>" if network else "")
    text = ("<node>" + net + f"<pool type='dir'><name>{pool}</name>"
            f"<capacity unit='{unit}'>{amount}</capacity><allocation>0</allocation>"
            f"<available unit='{unit}'>{amount}</available><source/>"
            "<target><path>/var/lib/libvirt/images</path></target></pool>"
            + "".join(domains) + "</node>")
    path = folder / f"{name}-node.xml"
    path.write_text(text)
    return f"test://{path}"


def preferring(prefix: str, best: str, other: str, stem: str = "vm") -> str:
    """A VM name (with ``prefix``) that rendezvous hashing puts on ``best`` rather than
    ``other``."""
    for i in range(1000):
        name = f"{prefix}{stem}{i}"
        if score(best, name) > score(other, name):
            return name
    raise AssertionError("no such name")
