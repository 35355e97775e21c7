"""Fleet-wide validation and placement: kind Host, spec.host and spec.hostSelector."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli, vm_manifest, write_manifest

from reconciler.adapters.manifests import load_desired as load
from reconciler.core.placement import PINNED, SELECTED, place, score


def host_manifest(name: str, labels: str = "", extra: str = "") -> str:
    text = ["apiVersion: reconciler/v1", "kind: Host", "metadata:", f"  name: {name}"]
    if labels:
        text.append("  labels:")
        text += [f"    {pair.split('=')[0]}: {pair.split('=')[1]}" for pair in labels.split(",")]
    text += ["spec:", f"  uri: qemu+ssh://root@{name}/system"]
    text += [f"  {line}" for line in extra.splitlines() if line]
    return "\n".join(text) + "\n"


def _fleet(tmp_path: Path, hosts: dict[str, str], vms: dict[str, str]) -> Path:
    m = tmp_path / "m"
    for name, labels in hosts.items():
        write_manifest(m, f"hosts/{name}.yaml", host_manifest(name, labels))
    for name, extra in vms.items():
        write_manifest(m, f"vms/{name}.yaml", vm_manifest(name, extra=extra))
    return m


def test_a_fleet_validates_and_places_each_vm(tmp_path):
    m = _fleet(tmp_path, {"hv-a": "rack=a", "hv-b": "rack=b"},
               {"web-01": "host: hv-a", "web-02": "hostSelector: {rack: b}"})
    r = run_cli("validate", m)
    assert r.code == 0, r.stdout + r.stderr
    inputs = load(m)
    assert [h.spec.name for h in inputs.hosts] == ["hv-a", "hv-b"]
    placed = place(inputs.vms, inputs.hosts)
    assert (placed["web-01"].host, placed["web-01"].how) == ("hv-a", PINNED)
    assert (placed["web-02"].host, placed["web-02"].how) == ("hv-b", SELECTED)


def test_a_vm_naming_an_undeclared_host_is_an_error_at_its_line(tmp_path):
    m = _fleet(tmp_path, {"hv-a": ""}, {"web-01": "host: hv-z"})
    r = run_cli("validate", m)
    assert r.code == 1
    assert f"{m}/vms/web-01.yaml:" in r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "spec.host" in out and "no Host named 'hv-z' is declared (hosts: hv-a)" in out
    # the line is the field's own
    line = out.split(f"{m}/vms/web-01.yaml:")[1].split(":")[0]
    assert (m / "vms/web-01.yaml").read_text().splitlines()[int(line) - 1].strip() == "host: hv-z"


def test_a_selector_matching_no_host_is_an_error(tmp_path):
    m = _fleet(tmp_path, {"hv-a": "rack=a"}, {"web-01": "hostSelector: {rack: c}"})
    r = run_cli("validate", m)
    assert r.code == 1
    assert "spec.hostSelector" in r.stdout
    assert "no Host has the labels 'rack=c' (hosts: hv-a)" in r.stdout


def test_with_hosts_declared_every_vm_says_where_it_runs(tmp_path):
    m = _fleet(tmp_path, {"hv-a": ""}, {"web-01": ""})
    r = run_cli("validate", m)
    assert r.code == 1
    assert "give this VM spec.host or spec.hostSelector" in r.stdout


def test_without_hosts_a_vm_may_not_name_one(tmp_path):
    m = _fleet(tmp_path, {}, {"web-01": "host: hv-a"})
    r = run_cli("validate", m)
    assert r.code == 1
    assert "the repository declares no Host manifest" in r.stdout


def test_host_and_selector_together_are_refused(tmp_path):
    m = _fleet(tmp_path, {"hv-a": "rack=a"}, {"web-01": "host: hv-a\nhostSelector: {rack: a}"})
    r = run_cli("validate", m)
    assert r.code == 1
    assert "not both" in r.stdout


def test_a_host_declared_twice_is_refused(tmp_path):
    m = _fleet(tmp_path, {"hv-a": ""}, {"web-01": "host: hv-a"})
    write_manifest(m, "hosts/again.yaml", host_manifest("hv-a"))
    r = run_cli("validate", m)
    assert r.code == 1
    assert "'hv-a' is already declared in" in r.stdout


def test_a_bad_host_manifest_names_file_line_and_field(tmp_path):
    m = tmp_path / "m"
    write_manifest(m, "h.yaml", host_manifest("hv-a", extra="capacity:\n  memory: 1GB\n"))
    r = run_cli("validate", m)
    assert r.code == 1
    assert f"{m}/h.yaml:8" in r.stdout and "spec.capacity.memory" in r.stdout


def test_schema_of_host(tmp_path):
    r = run_cli("schema", "Host")
    assert r.code == 0 and '"title": "Host"' in r.stdout


# --- placement --------------------------------------------------------------------------------


def _inputs(tmp_path: Path, hosts: dict[str, str], vms: dict[str, str], extra_hosts: str = ""):
    m = _fleet(tmp_path, hosts, vms)
    if extra_hosts:
        for name, text in (pair.split("|") for pair in extra_hosts.split(";")):
            write_manifest(m, f"hosts/{name}.yaml", host_manifest(name, "pool=x", text))
    inputs = load(m)
    assert not inputs.problems, inputs.problems
    return inputs


def test_selection_is_rendezvous_hashing_and_stable_when_a_host_is_added(tmp_path):
    vms = {f"vm-{i:02d}": "hostSelector: {pool: x}" for i in range(60)}
    three = _inputs(tmp_path / "3", {f"hv-{c}": "pool=x" for c in "abc"}, vms)
    four = _inputs(tmp_path / "4", {f"hv-{c}": "pool=x" for c in "abcd"}, vms)
    before = {n: p.host for n, p in place(three.vms, three.hosts).items()}
    after = {n: p.host for n, p in place(four.vms, four.hosts).items()}
    moved = {n for n in vms if before[n] != after[n]}
    assert moved, "the new host takes some VMs"
    assert all(after[n] == "hv-d" for n in moved), "a VM moves only to the added host"
    assert len(moved) < len(vms) / 2
    # each VM goes to the best-scoring host: the documented rule
    for name, host in after.items():
        assert host == f"hv-{max('abcd', key=lambda c: score(f'hv-{c}', name))}"
    # the same on every run (no state, no order of files)
    again = _inputs(tmp_path / "again", {f"hv-{c}": "pool=x" for c in "dcba"}, vms)
    assert {n: p.host for n, p in place(again.vms, again.hosts).items()} == after


def test_capacity_and_cordon_steer_selection(tmp_path):
    vms = {f"vm-{i}": "hostSelector: {pool: x}" for i in range(4)}
    inputs = _inputs(tmp_path, {}, vms, "hv-a|capacity:\n  vms: 1;hv-b|cordon: true")
    placed = place(inputs.vms, inputs.hosts)
    on_a = [n for n, p in placed.items() if p.host == "hv-a"]
    assert len(on_a) == 1
    nowhere = [p for p in placed.values() if p.host is None]
    assert len(nowhere) == 3
    assert all("hv-a holds its 1 VMs" in p.reason for p in nowhere)


def test_a_pinned_vm_over_a_hosts_memory_is_placed_nowhere(tmp_path):
    inputs = _inputs(tmp_path, {}, {"big": "host: hv-a"},
                     "hv-a|capacity:\n  memory: 32MiB")
    placed = place(inputs.vms, inputs.hosts)["big"]
    assert placed.host is None
    assert placed.reason == "over capacity: hv-a has 32MiB of 64MiB memory left"


def test_a_move_is_asked_for_as_something_that_cannot_be_undone():
    """apply asks for `yes` typed out before a move: it deletes the VM's volumes here."""
    from reconciler.core import render
    from reconciler.core.plan import Action, Kind, Op, Plan, Step, vm_target

    steps = (Step(Op.DEFINE_THERE, vm_target("web"), "hv-a", "hv-b"),
             Step(Op.UNDEFINE_HERE, vm_target("web"), "hv-a", "hv-b"))
    plan = Plan((Action(Kind.MOVE, vm_target("web"), steps),), "f")
    assert render.irreversible(plan) == (
        "moves 1 VM to another host, deleting its volumes here once it is there (web to hv-b)")
