"""Hostile: what the reconciler says about the copy a stopped move left (plan, apply, targeted
runs, fleet plans, snapshots, JSON, exit codes, the question on a terminal, an unreachable
destination), and whether a saved or confirmed plan still deletes once the copy is in use."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli
from terminal import Terminal, plain
from test_hostile_leftovers import as_, repo, stopped_move

pytestmark = pytest.mark.libvirtd

FINISHED = "finish the move hv-a -> hv-b: it is there; delete the copy of its volumes left here"


def _user_xml(prefix: str, pool: str, volume: str) -> str:
    return textwrap.dedent(f"""\
        <domain type='qemu'><name>{prefix}user</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
          <os><type arch='x86_64'>hvm</type></os>
          <devices><disk type='volume' device='disk'><driver name='qemu' type='raw'/>
            <source pool='{pool}' volume='{volume}'/><target dev='vda' bus='virtio'/></disk>
          </devices></domain>""")


def test_plan_outputs_name_the_leftover(host, host_b, tmp_path, prefix, monkeypatch):
    name = f"{prefix}po"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    text = as_(tmp_path, "hv-a", host, "plan", m, "--detailed-exitcode")
    assert text.code == 2 and FINISHED in text.stdout
    js = as_(tmp_path, "hv-a", host, "plan", m, "--format", "json")
    assert js.code == 0
    doc = json.loads(js.stdout)
    print(json.dumps(doc, indent=1)[:3000])
    assert name in js.stdout
    md = as_(tmp_path, "hv-a", host, "plan", m, "--format", "markdown")
    assert md.code == 0 and name in md.stdout
    st = run_cli("status", "--connect", host.uri, "--config", tmp_path / "hv-a.yaml",
                 "--state-dir", tmp_path / "state-hv-a")
    print("$ status\n", st.code, st.stdout, st.stderr)
    # fleet plan, over the URIs
    fl = run_cli("plan", "--fleet", "--detailed-exitcode", m)
    print("$ plan --fleet ->", fl.code, "\n", fl.stdout, fl.stderr)
    assert name in fl.stdout and "finish the move" in fl.stdout, \
        "plan --fleet does not show the leftover"
    assert fl.code == 2
    # and from snapshots
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    for me, h in (("hv-a", host), ("hv-b", host_b)):
        r = run_cli("snapshot", "--connect", h.uri, "--out", snaps / f"{me}.snapshot")
        assert r.code == 0, r.stderr
    fs = run_cli("plan", "--fleet", "--snapshots", snaps, "--detailed-exitcode", m)
    print("$ plan --fleet --snapshots ->", fs.code, "\n", fs.stdout, fs.stderr)
    assert "finish the move" in fs.stdout, "plan --fleet --snapshots does not show the leftover"
    assert host.volume(f"{name}-root") is not None  # nothing above deleted it


def test_a_plan_targeting_the_vm_does_not_say_no_changes(host, host_b, tmp_path, prefix,
                                                         monkeypatch):
    """The targeted run names the very VM whose copy is left here."""
    name = f"{prefix}tg"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    # the targeted run names the VM: it is the one whose copy is left here
    tgt = as_(tmp_path, "hv-a", host, "plan", m, "--target", name, "--detailed-exitcode")
    assert "No changes" not in tgt.stdout or tgt.code != 0, \
        "a plan targeting the VM says No changes while its copy is left here"


def test_an_unreachable_destination_deletes_nothing_and_says_so(host, host_b, tmp_path, prefix,
                                                              monkeypatch):
    name = f"{prefix}ur"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    hosts = (m / "hosts.yaml").read_text()
    (m / "hosts.yaml").write_text(hosts.replace(host_b.uri, "qemu+unix:///system?socket="
                                                f"{tmp_path}/no-such-sock"))
    planned = as_(tmp_path, "hv-a", host, "plan", m, "--detailed-exitcode")
    applied = as_(tmp_path, "hv-a", host, "apply", m)
    assert host.volume(f"{name}-root") is not None
    assert "No changes" not in planned.stdout, \
        "says No changes while it could not read the host the VM moved to"
    assert planned.code == 1 and f"kept: default/{name}-root here" in planned.stdout
    assert "cannot be read" in planned.stdout
    assert applied.code == 1  # nothing done, and said: a blocked item


def test_a_saved_plan_is_refused_once_the_copy_is_in_use(host, host_b, tmp_path, prefix,
                                                         monkeypatch):
    name = f"{prefix}sv"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    out = tmp_path / "p.json"
    assert as_(tmp_path, "hv-a", host, "plan", m, "--out", out).code == 0
    host.conn.defineXML(_user_xml(prefix, "default", f"{name}-root"))
    as_(tmp_path, "hv-a", host, "apply", m, "--plan", out)
    assert host.volume(f"{name}-root") is not None


def test_apply_on_a_terminal_wants_yes_and_deletes_nothing_in_use_after_the_question(
        host, host_b, tmp_path, prefix, monkeypatch):
    name = f"{prefix}tt"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    cfg = tmp_path / "hv-a.yaml"
    args = ["apply", "--connect", host.uri, "--config", str(cfg), "--state-dir",
            str(tmp_path / "state-hv-a"), str(m)]
    term = Terminal(*args)
    seen = plain(term.expect("Enter a value:"))
    print(seen)
    term.send("y")
    assert term.finish() == 1
    assert host.volume(f"{name}-root") is not None  # `y` is not `yes`
    assert f"deletes 1 volume ({name}-root)" in seen and "Only 'yes'" in seen, \
        "the question does not say a volume is deleted"
    assert "moves 1 VM to another host" not in seen, \
        "the question says it moves a VM, but it only deletes a volume (the VM moved already)"


def test_a_volume_taken_into_use_while_apply_asks_is_not_deleted(host, host_b, tmp_path, prefix,
                                                                 monkeypatch):
    """The plan is shown, the question waits; meanwhile someone attaches the copy to a rescue
    VM here. `yes` then must not delete a volume that is in use now."""
    name = f"{prefix}tq"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    cfg = tmp_path / "hv-a.yaml"
    term = Terminal("apply", "--connect", host.uri, "--config", str(cfg), "--state-dir",
                    str(tmp_path / "state-hv-a"), str(m))
    term.expect("Enter a value:")
    host.conn.defineXML(_user_xml(prefix, "default", f"{name}-root"))
    term.send("yes")
    code = term.finish()
    print(plain(term.seen))
    assert host.volume(f"{name}-root") is not None, \
        f"deleted {name}-root, which {prefix}user uses since the question was asked"
    assert code in (0, 1)


def test_leftovers_of_a_running_vm_with_two_disks_and_a_seed(host, host_b, tmp_path, prefix,
                                                             monkeypatch):
    """HELD expected: a live migration that stopped before its deletes (two disks, a cloud-init
    seed): every copy deleted, the VM on hv-b untouched and running."""
    name = f"{prefix}ci"
    disks = "- name: root\n  size: 16MiB\n- name: data\n  size: 16MiB"
    extra = "cloudInit:\n  userData: |\n    #cloud-config\n    hostname: x\n"
    m = repo(tmp_path, host, host_b, name, "hv-a", "running", disks, extra=extra)
    assert as_(tmp_path, "hv-a", host, "apply", m).code == 0
    assert host.volume(f"{name}-cidata") is not None
    repo(tmp_path, host, host_b, name, "hv-b", "running", disks, extra=extra)
    from reconciler.adapters.libvirt.storage import Storage
    from reconciler.core.errors import PermanentError
    real = Storage.delete_volume

    def stops(self, pool_, volume):  # type: ignore[no-untyped-def]
        if volume.startswith(name):
            raise PermanentError("simulated stop")
        return real(self, pool_, volume)

    with monkeypatch.context() as patch:
        patch.setattr(Storage, "delete_volume", stops)
        assert as_(tmp_path, "hv-a", host, "apply", m).code == 1
    assert host_b.domain(name).isActive()
    planned = as_(tmp_path, "hv-a", host, "plan", m)
    assert FINISHED in planned.stdout
    assert as_(tmp_path, "hv-a", host, "apply", m).code == 0
    for v in ("root", "data", "cidata"):
        assert host.volume(f"{name}-{v}") is None, v
        assert host_b.volume(f"{name}-{v}") is not None, v
    assert host_b.domain(name).isActive()
    assert "No changes" in as_(tmp_path, "hv-a", host, "plan", m).stdout
    assert "No changes" in as_(tmp_path, "hv-b", host_b, "plan", m).stdout
    _ = Path
