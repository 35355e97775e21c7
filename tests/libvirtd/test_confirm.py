"""apply's question, under a real pseudo-terminal (issue 13.4): a plan that destroys anything or
deletes a volume wants `yes` typed out; one `y` does not do it. `--plan FILE` (reviewed) and
`--yes` are not asked."""

from __future__ import annotations

from pathlib import Path

from conftest import apply, plan, vm_manifest, write_manifest
from terminal import Terminal, plain


def _folder_with_a_vm_to_destroy(host, tmp_path: Path) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    m = tmp_path / "m"
    name = f"{host.prefix}gone"
    write_manifest(m, "vm.yaml", vm_manifest(name, state="stopped",
                                             disks="- {name: root, size: 8MiB, reclaim: delete}"))
    assert apply(host, m).code == 0
    (m / "vm.yaml").unlink()
    write_manifest(m, "keep.yaml", vm_manifest(f"{host.prefix}keep", state="stopped"))
    return m, name


def _apply_args(host, m: Path, *extra: str) -> list[str]:  # type: ignore[no-untyped-def]
    return ["apply", "--connect", host.uri, "--state-dir", str(m.parent / "state"), *extra,
            str(m)]


def test_a_destroy_wants_yes_typed_out(host, tmp_path):
    m, name = _folder_with_a_vm_to_destroy(host, tmp_path)
    term = Terminal(*_apply_args(host, m))
    seen = term.expect("Enter a value:")
    assert (f"This plan destroys 1 resource ({name}) and deletes 1 volume ({name}-root): that "
            "cannot be undone.") in seen, seen
    assert "Only 'yes' will be accepted to approve." in seen
    term.send("y")
    assert term.finish() == 1
    assert "Apply cancelled." in term.seen
    assert host.exists(name) and host.volume(f"{name}-root") is not None

    term = Terminal(*_apply_args(host, m))
    term.expect("Enter a value:")
    term.send("yes")
    assert term.finish() == 0, term.seen
    assert f"{name}: destroyed\n" in plain(term.seen), term.seen
    assert not host.exists(name) and host.volume(f"{name}-root") is None


def test_a_plan_without_destroys_asks_y_n(host, tmp_path):
    m = tmp_path / "m"
    name = f"{host.prefix}new"
    write_manifest(m, "vm.yaml", vm_manifest(name, state="stopped"))
    term = Terminal(*_apply_args(host, m))
    seen = term.expect("Apply this plan? [y/N]:")
    assert "Enter a value" not in seen
    term.send("y")
    assert term.finish() == 0, term.seen
    assert host.exists(name)


def test_a_saved_plan_is_not_asked_again(host, tmp_path):
    m, name = _folder_with_a_vm_to_destroy(host, tmp_path)
    saved = tmp_path / "plan.json"
    assert plan(host, m, "--out", str(saved)).code == 0
    term = Terminal(*_apply_args(host, m, "--plan", str(saved)))
    assert term.finish() == 0, term.seen
    assert "Enter a value" not in term.seen and "[y/N]" not in term.seen
    assert not host.exists(name)
