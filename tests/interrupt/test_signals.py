"""SIGTERM and SIGINT during `reconciler apply` (a real process; the test hook sends the signal
right after a given step, as `kill` or Ctrl-C would): the step in flight finishes, no new one
starts, apply says which VMs were not done and exits 1 without a traceback, and the next apply
finishes the work. Before, apply had no handler: SIGTERM killed it (exit 143) mid-action."""

from __future__ import annotations

from conftest import apply, plan, vm_manifest, write_manifest
from interrupting import apply_stopped, remove, state_of, volumes


def assert_converged(host, folder) -> None:  # type: ignore[no-untyped-def]
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_sigterm_during_a_destroy_finishes_the_graceful_stop_and_nothing_more(host, tmp_path):
    name = f"{host.prefix}term"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", vm_manifest(
        name, disks="- {name: root, size: 8MiB, reclaim: delete}"))
    write_manifest(folder, "keep.yaml", vm_manifest(f"{host.prefix}keep", state="stopped"))
    assert apply(host, folder).code == 0
    (folder / "vm.yaml").unlink()
    # SIGTERM right after the ACPI shutdown request: the step in flight is the graceful
    # shutdown, which an OS-less guest ignores: forced off after its shutdownTimeout (1s).
    r = apply_stopped(host, folder, 1, signal_name="TERM")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "reconciler: SIGTERM: finishing the step in flight, starting no new one" in r.stderr
    assert (f"{name}: destroy failed: interrupted after 2 steps, before delete volume: the "
            "next run finishes it") in r.stdout
    assert "interrupted by SIGTERM: stopped between two steps; 1 action not finished" in r.stderr
    dom = host.domain(name)  # stopped, still defined and marked, its volume still there
    assert not dom.isActive()
    assert f"default/{name}-root" in volumes(host, name)

    r2 = apply(host, folder)
    assert r2.code == 0
    assert f"{name}: destroyed\n" in r2.stdout
    assert not host.exists(name) and volumes(host, name) == {}
    assert_converged(host, folder)


def test_sigint_starts_no_new_action(host, tmp_path):
    base = f"{host.prefix}int"
    folder = tmp_path / "manifests"
    for suffix in ("a", "b"):
        write_manifest(folder, f"{suffix}.yaml", vm_manifest(
            f"{base}-{suffix}", state="stopped", disks="- {name: root, size: 8MiB}"))
    # Ctrl-C right after the first VM's definition: its volume is not made, the second VM is
    # not started at all.
    r = apply_stopped(host, folder, 1, signal_name="INT", extra=("--parallel", "1"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert (f"{base}-a: create failed: interrupted after 1 step, before create volume: the "
            "next run finishes it") in r.stdout
    assert f"{base}-b: create failed: interrupted: not started" in r.stdout
    assert "interrupted by SIGINT: stopped between two steps; 2 actions not finished" in r.stderr
    assert host.exists(f"{base}-a") and not host.exists(f"{base}-b")
    assert volumes(host, base) == {}

    r2 = apply(host, folder)
    assert r2.code == 0
    assert state_of(host, base)["volumes"] == {"default/VM-a-root": 8 << 20,
                                               "default/VM-b-root": 8 << 20}
    assert_converged(host, folder)
    remove(host, base)
