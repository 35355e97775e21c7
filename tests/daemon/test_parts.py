"""The daemon's parts in one process, with real sockets, threads and files: notifications to
a socket nobody reads, calls that do not return, the watch after its directory is replaced,
the watchdog's pings, and which libvirt events wake the loop."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from reconciler.core.live import LiveState
from reconciler.core.validate.result import Validated
from reconciler.shells.bounded import Blocked, Lane, Stopped
from reconciler.shells.metrics import Metrics
from reconciler.shells.sdnotify import Notifier
from reconciler.shells.supervisor import Progress, Supervisor
from reconciler.shells.wakeups import Interest, Wakeups, interest
from reconciler.shells.watch import Watch


@pytest.fixture
def unread_socket(tmp_path):  # type: ignore[no-untyped-def]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    yield sock
    sock.close()


def test_a_full_notify_socket_drops_at_once_and_counts(tmp_path, unread_socket):
    drops: list[int] = []
    notifier = Notifier(str(tmp_path / "notify"), on_drop=lambda: drops.append(1))
    started = time.monotonic()
    sent = [notifier.send(STATUS=f"message {i}") for i in range(50)]
    assert time.monotonic() - started < 1.0  # nothing waited for the reader
    limit = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    # unix(7): a sender blocks once more than max_dgram_qlen datagrams wait (10 by default).
    assert sent.count(True) in (limit, limit + 1)
    assert notifier.dropped == sent.count(False) == len(drops) > 0


def test_a_dropped_ready_goes_with_the_next_message(tmp_path, unread_socket):
    notifier = Notifier(str(tmp_path / "notify"))
    while notifier.send(STATUS="filling"):
        pass
    assert not notifier.send(READY=1, STATUS="1 in sync")
    while True:  # systemd reads again
        try:
            unread_socket.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
    assert notifier.send(STATUS="2 in sync")
    assert unread_socket.recv(4096).decode() == "READY=1\nSTATUS=2 in sync"


def test_no_notify_socket_is_a_drop_not_an_error(tmp_path):
    notifier = Notifier(str(tmp_path / "nobody"))
    assert not notifier.send(WATCHDOG=1)
    assert notifier.dropped == 1


def test_a_call_that_does_not_return_is_given_up_and_its_lane_stays_busy():
    release = threading.Event()
    late: list[object] = []
    lane = Lane("reading", on_late=late.append)
    started = time.monotonic()
    with pytest.raises(Blocked, match="no answer within"):
        lane.call(lambda: release.wait(30) and "value", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.0
    assert lane.busy
    with pytest.raises(Blocked, match="an earlier one still running"):
        lane.call(lambda: "other", timeout=5)  # at once: no second thread stuck
    release.set()
    assert _wait(lambda: not lane.busy)
    assert _wait(lambda: late == ["value"])  # e.g. a connection opened too late: closed
    assert lane.call(lambda: 42, timeout=1) == 42


def test_a_wait_ends_when_stop_is_asked_and_errors_pass_through():
    lane = Lane("reading")
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(Stopped):
        lane.call(lambda: threading.Event().wait(5), timeout=30, stop=stop.is_set)
    other = Lane("other")
    with pytest.raises(ZeroDivisionError):
        other.call(lambda: 1 / 0, timeout=1)


def _wait(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _pings(tmp_path, monkeypatch, work) -> list[str]:  # type: ignore[no-untyped-def]
    """The WATCHDOG pings (period 0.4 s) while ``work(progress)`` runs as the loop."""
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / f"wd-{work.__name__}"
    sock.bind(str(path))
    sock.settimeout(0.05)
    progress, stop = Progress(), threading.Event()
    supervisor = Supervisor(Notifier(str(path)), progress, stop, grace=0.5)
    loop = threading.Thread(target=work, args=(progress,), daemon=True)
    loop.start()
    threading.Timer(2.0, stop.set).start()
    supervisor.supervise(loop)
    got = []
    while True:
        try:
            got.append(sock.recv(100).decode())
        except TimeoutError:
            break
    sock.close()
    return got


def test_the_watchdog_is_pinged_while_the_loop_is_idle(tmp_path, monkeypatch):
    def idle(progress: Progress) -> None:
        progress.waiting()
        time.sleep(5)

    assert len(_pings(tmp_path, monkeypatch, idle)) >= 3


def test_the_watchdog_is_not_pinged_while_the_loop_is_stuck_in_a_call(tmp_path, monkeypatch):
    def stuck(progress: Progress) -> None:
        progress.busy("carrying out the plan")
        time.sleep(5)  # a call that does not return

    assert len(_pings(tmp_path, monkeypatch, stuck)) <= 1  # the last one, as it went busy


def test_the_watchdog_is_pinged_while_the_loop_makes_progress_or_waits_bounded(tmp_path,
                                                                             monkeypatch):
    def stepping(progress: Progress) -> None:
        progress.busy("carrying out the plan")
        for _ in range(50):
            time.sleep(0.05)
            progress.clock()  # the executor reads its clock between calls

    def bounded(progress: Progress) -> None:
        progress.busy("reading")
        with progress.bounded(10):
            time.sleep(5)

    assert len(_pings(tmp_path, monkeypatch, stepping)) >= 3
    assert len(_pings(tmp_path, monkeypatch, bounded)) >= 3


def test_events_of_what_is_no_business_of_this_instance_wake_nothing():
    wakeups = Wakeups(60)
    assert wakeups.libvirt_event("domain", "anything")  # before the first plan: all do
    wakeups.libvirt_dirty = False
    wakeups.interest = Interest(frozenset({"web-01"}), frozenset({"lab"}), frozenset())
    assert not wakeups.libvirt_event("domain", "someone-elses")
    assert not wakeups.libvirt_event("network", "web-01")  # another kind's name space
    assert not wakeups.libvirt_event("pool", "lab")
    assert not wakeups.libvirt_dirty
    assert wakeups.libvirt_event("network", "lab")
    assert wakeups.libvirt_event("domain", "")  # the daemon's own poll


def test_interest_is_what_is_managed_and_what_a_manifest_names():
    assert interest(Validated((), ()), LiveState(()), "default") == Interest(
        frozenset(), frozenset(), frozenset())


def test_the_watch_follows_a_replaced_directory(tmp_path):
    watched = tmp_path / "current"
    first = tmp_path / "one"
    first.mkdir()
    os.symlink(first, watched)
    woken = threading.Event()
    watch = Watch(watched, woken.set, poll=60)  # no periodic look: inotify alone
    watch.start()
    try:
        (first / "a.yaml").write_text("x: 1\n")
        assert woken.wait(5)
        for replace in ("symlink", "recreate"):
            second = tmp_path / f"two-{replace}"
            second.mkdir()
            if replace == "symlink":
                os.symlink(second, tmp_path / "new")
                os.replace(tmp_path / "new", watched)
            else:
                os.unlink(watched)
                shutil.move(str(second), str(watched))
                second = watched
            assert _wait(lambda: watch.armed and watch._identity == (
                os.stat(watched).st_dev, os.stat(watched).st_ino))
            woken.clear()
            (second / "b.yaml").write_text("x: 2\n")  # seen through the new watch
            assert woken.wait(5), replace
    finally:
        watch.stop()


def test_metrics_on_a_taken_port_raise_oserror_for_one_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(OSError):
            Metrics().serve(f"127.0.0.1:{taken.getsockname()[1]}")
    finally:
        taken.close()
    with pytest.raises(ValueError, match="not host:port"):
        Metrics().serve("localhost")
