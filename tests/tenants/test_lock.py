"""One writer per instance: `apply` and `run` take an exclusive lock per instance, wherever their
state directories are; the lock never follows a symbolic link, and its refusal names the
holder. The writers here are real processes (`reconciler run`) and the CLI."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import libvirt
import pytest
from conftest import TEST_URI, CliResult, run_cli, vm_manifest, write_manifest
from writers import writer

RUN_DIR = Path("/run/reconciler")


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The writers' lock directory for this test (RECONCILER_LOCK_DIR, as README says)."""
    folder = tmp_path / "locks"
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(folder))
    return folder


@pytest.fixture
def manifests(tmp_path: Path, prefix: str) -> Path:
    folder = tmp_path / "manifests"
    write_manifest(folder, "web.yaml", vm_manifest(f"{prefix}web"))
    return folder


def apply(manifests: Path, state_dir: Path, *args: str | Path) -> CliResult:
    return run_cli("apply", "--yes", "--connect", TEST_URI, "--state-dir", state_dir, *args,
                   manifests)


def exists(conn: libvirt.virConnect, name: str) -> bool:
    return name in {d.name() for d in conn.listAllDomains(0)}


def test_a_second_writer_of_the_instance_is_refused_whatever_its_state_dir(
        testdrv, prefix, manifests, tmp_path, lock_dir, own_instance) -> None:
    empty = tmp_path / "daemon-manifests"
    empty.mkdir()
    with writer(empty, tmp_path / "state-a", TEST_URI, tmp_path / "run.log") as daemon:
        r = apply(manifests, tmp_path / "state-b")
        assert r.code == 1, r.stdout + r.stderr
        assert f"pid {daemon.pid} (run)" in r.stderr
        assert own_instance in r.stderr and str(tmp_path / "state-a") in r.stderr
        assert not exists(testdrv, f"{prefix}web")
    r = apply(manifests, tmp_path / "state-b")  # released when the daemon stopped
    assert r.code == 0, r.stdout + r.stderr
    assert exists(testdrv, f"{prefix}web")


def test_another_instance_is_not_held_up(testdrv, prefix, manifests, tmp_path,
                                         lock_dir) -> None:
    empty = tmp_path / "daemon-manifests"
    empty.mkdir()
    with writer(empty, tmp_path / "state", TEST_URI, tmp_path / "run.log"):
        r = apply(manifests, tmp_path / "state", "--instance", f"other-{prefix.rstrip('-')}")
        assert r.code == 0, r.stdout + r.stderr


def test_lock_timeout_waits_for_the_holder(testdrv, prefix, manifests, tmp_path,
                                           lock_dir) -> None:
    empty = tmp_path / "daemon-manifests"
    empty.mkdir()
    with writer(empty, tmp_path / "state-a", TEST_URI, tmp_path / "run.log") as daemon:
        started = time.monotonic()
        r = apply(manifests, tmp_path / "state-b", "--lock-timeout", "1s")
        assert r.code == 1
        assert time.monotonic() - started >= 1.0
        assert f"pid {daemon.pid} (run)" in r.stderr and "waited 1s" in r.stderr
        stopper = threading.Timer(0.5, daemon.stop)
        stopper.start()
        r = apply(manifests, tmp_path / "state-b", "--lock-timeout", "30s")
        stopper.join()
        assert r.code == 0, r.stdout + r.stderr
    assert exists(testdrv, f"{prefix}web")


def test_a_bad_lock_timeout_is_an_error(manifests, tmp_path, lock_dir) -> None:
    r = apply(manifests, tmp_path / "state", "--lock-timeout", "5")
    assert r.code != 0
    assert "not a duration" in r.stderr


def test_the_lock_never_follows_a_symbolic_link(testdrv, prefix, manifests, tmp_path, lock_dir,
                                                own_instance) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("precious\n")
    state = tmp_path / "state"
    state.mkdir()
    lock_dir.mkdir()
    for place in (state / "lock", lock_dir / f"{own_instance}.lock"):  # old place, and new
        place.symlink_to(victim)
    r = apply(manifests, state)
    assert victim.read_text() == "precious\n"
    assert r.code == 1
    assert "symbolic link" in r.stderr and str(lock_dir / f"{own_instance}.lock") in r.stderr
    assert not exists(testdrv, f"{prefix}web")


@pytest.mark.parametrize("kind", ["fifo", "directory", "dangling link", "hard link"])
def test_a_lock_path_that_is_no_file_is_refused(testdrv, prefix, manifests, tmp_path, lock_dir,
                                                own_instance, kind) -> None:
    state = tmp_path / "state"
    state.mkdir()
    lock_dir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for place in (state / "lock", lock_dir / f"{own_instance}.lock"):
        if kind == "fifo":
            os.mkfifo(place)
        elif kind == "directory":
            place.mkdir()
        elif kind == "dangling link":
            place.symlink_to(tmp_path / "created-through-the-link")
        else:
            os.link(victim, place)
    started = time.monotonic()
    r = apply(manifests, state)
    assert time.monotonic() - started < 10
    assert r.code == 1
    expected = {"dangling link": "symbolic link", "hard link": "other hard links"}
    assert expected.get(kind, "not a regular file") in r.stderr, r.stderr
    assert not exists(testdrv, f"{prefix}web")
    assert not (tmp_path / "created-through-the-link").exists()
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", ".hidden", "", "x\ny", "x" * 65])
def test_an_instance_name_must_be_safe_as_a_file_name(manifests, tmp_path, name,
                                                      lock_dir) -> None:
    for command in (("apply", "--yes", "--state-dir", tmp_path / "state"),
                    ("status", "--state-dir", tmp_path / "state"), ("plan",)):
        r = run_cli(*command, "--connect", TEST_URI, "--instance", name,
                    *([manifests] if command[0] != "status" else []),
                    env={"RECONCILER_INSTANCE": ""})
        assert r.code == 1, (command, r.stdout, r.stderr)
        assert "instance name" in r.stderr, r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.lock").exists()
    assert not any(lock_dir.glob("*")) if lock_dir.exists() else True


@pytest.mark.skipif(os.geteuid() != 0, reason="the default lock directory needs root")
def test_the_lock_lives_in_run_per_instance_and_goes_with_its_holder(
        testdrv, tmp_path, own_instance, monkeypatch) -> None:
    monkeypatch.delenv("RECONCILER_LOCK_DIR", raising=False)
    empty = tmp_path / "daemon-manifests"
    empty.mkdir()
    path = RUN_DIR / f"{own_instance}.lock"
    with writer(empty, tmp_path / "state", TEST_URI, tmp_path / "run.log") as daemon:
        assert path.is_file() and not path.is_symlink()
        holder = path.read_text()
        assert f"pid {daemon.pid} (run)" in holder and str(tmp_path / "state") in holder
        assert not (tmp_path / "state" / "lock").exists()
        daemon.stop()
    assert not path.exists()  # nothing left behind


def test_a_lock_left_by_a_killed_writer_does_not_block(testdrv, prefix, manifests, tmp_path,
                                                       lock_dir, own_instance) -> None:
    empty = tmp_path / "daemon-manifests"
    empty.mkdir()
    with writer(empty, tmp_path / "state", TEST_URI, tmp_path / "run.log") as daemon:
        daemon.stop(signal.SIGKILL)
    assert (lock_dir / f"{own_instance}.lock").exists()  # stale: flock died with its holder
    r = apply(manifests, tmp_path / "state")
    assert r.code == 0, r.stdout + r.stderr
    assert exists(testdrv, f"{prefix}web")
    assert not (lock_dir / f"{own_instance}.lock").exists()


def test_a_second_instances_daemon_on_a_taken_metrics_address_warns_and_runs(testdrv, tmp_path,
                                                                      prefix, lock_dir) -> None:
    import socket

    from writers import Writer

    empty = tmp_path / "daemon-manifests"
    empty.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    with writer(empty, tmp_path / "state-a", TEST_URI, tmp_path / "a.log",
                "--metrics-addr", address):
        other = Writer(empty, tmp_path / "state-b", TEST_URI, tmp_path / "b.log",
                       "--metrics-addr", address,
                       env={"RECONCILER_INSTANCE": f"other-{prefix.rstrip('-')}"})
        try:
            deadline = time.monotonic() + 30
            while "metrics not served" not in other.output() and time.monotonic() < deadline:
                time.sleep(0.2)
            output = other.output()
            assert other.proc.poll() is None, output  # it runs on, without metrics
        finally:
            other.stop()
        line = next(x for x in output.splitlines() if "metrics not served" in x)
        assert address in line and "its own --metrics-addr" in line, output
        assert "Traceback" not in output


def test_the_systemd_unit_gives_the_daemon_the_lock_directory_and_keeps_it(tmp_path) -> None:
    import shutil
    import subprocess

    unit = (Path(__file__).resolve().parents[2] / "systemd" / "reconciler.service").read_text()
    # Under ProtectSystem=strict only these are writable; removing /run/reconciler when the
    # service stops would take the lock file from under an apply that holds it.
    for setting in ("RuntimeDirectory=reconciler", "RuntimeDirectoryPreserve=yes"):
        assert setting in unit
    if shutil.which("systemd-analyze"):
        local = tmp_path / "reconciler.service"
        local.write_text(unit.replace("/usr/local/bin/reconciler", "/bin/true"))
        result = subprocess.run(["systemd-analyze", "verify", str(local)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


@pytest.fixture
def not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process seen as user 12345, who may not write /run/reconciler and has no
    XDG_RUNTIME_DIR: its locks fall back to <tmp>/reconciler-12345 (the tests run as root, so
    the user is played; the files are real)."""
    from reconciler.adapters import lock

    real_access = os.access
    monkeypatch.delenv("RECONCILER_LOCK_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(lock.os, "geteuid", lambda: 12345)
    monkeypatch.setattr(lock.os, "access", lambda p, mode: False if Path(p) == lock.RUN_DIR
                        else real_access(p, mode))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    return tmp_path / "reconciler-12345"


def test_a_user_who_may_not_write_run_gets_a_private_lock_directory(not_root) -> None:
    from reconciler.adapters import lock

    not_root.mkdir(mode=0o700)
    os.chown(not_root, 12345, -1)
    assert lock.path("web") == not_root / "web.lock"


@pytest.mark.parametrize("hostile", ["someone else's", "group-writable", "a symbolic link"])
def test_a_private_lock_directory_that_is_not_the_users_own_is_refused(not_root, tmp_path,
                                                                       hostile) -> None:
    from reconciler.adapters import lock
    from reconciler.core.errors import PermanentError

    if hostile == "a symbolic link":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        os.chown(elsewhere, 12345, -1)
        not_root.symlink_to(elsewhere)
    else:
        not_root.mkdir(mode=0o700)
        os.chown(not_root, 12345 if hostile == "group-writable" else 0, -1)
        if hostile == "group-writable":
            not_root.chmod(0o770 | 0o020)
    with pytest.raises(PermanentError, match="lock directory"):
        lock.path("web")
