"""The daemon as a subprocess, with a NOTIFY_SOCKET the test reads and a metrics port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

RECONCILER = str(Path(sys.executable).with_name("reconciler"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    """``read_notify=False``: the notify socket is bound and never read (a systemd that does
    not keep up). ``env``: added to the environment (e.g. WATCHDOG_USEC). ``manifests``: PATH,
    None for none (pull mode, ``--git`` in ``args``)."""

    def __init__(self, manifests: Path | None, state_dir: Path, uri: str, tmp: Path, *,
                 read_notify: bool = True, env: dict[str, str] | None = None,
                 port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.manifests = manifests
        self.state_dir = state_dir
        self.port = port or free_port()
        self.notify_path = tmp / "notify.sock"
        self.messages: list[str] = []
        self.stamped: list[tuple[float, str]] = []  # (monotonic time received, message)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.notify_path))
        self.sock.settimeout(0.2)
        self._reading = read_notify
        self._reader = threading.Thread(target=self._read, daemon=True)
        if read_notify:
            self._reader.start()
        self.log = open(tmp / "daemon.log", "w+")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), **(env or {})}
        self.proc = subprocess.Popen(
            [RECONCILER, "run", "--connect", uri, "--state-dir", str(state_dir),
             "--debounce", "0.3", "--interval", "30", "--log-format", "json",
             "--metrics-addr", f"127.0.0.1:{self.port}", *args,
             *([] if manifests is None else [str(manifests)])],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def _read(self) -> None:
        while self._reading:
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(message)
            self.stamped.append((time.monotonic(), message))

    def stopped_within(self, seconds: float) -> int | None:
        """SIGTERM, then the exit status if the daemon exits within ``seconds`` (else None;
        it is killed at ``stop``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return None

    def wait_ready(self, timeout: float = 15) -> None:
        assert wait_for(lambda: any("READY=1" in m for m in self.messages), timeout), (
            f"no READY=1; messages {self.messages}; log:\n{self.output()}")

    def metric(self, name: str) -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
        for line in body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def metric_sum(self, name: str) -> float:
        """The sum of every series of ``name`` (all label values)."""
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                   if line.startswith((name + " ", name + "{")))

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def events(self) -> list[dict]:
        out = []
        for line in self.output().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        time.sleep(0.3)  # let the last notify datagrams arrive
        self._reading = False
        if self._reader.is_alive():
            self._reader.join(2)
        self.sock.close()
        self.log.close()
        return code


def wait_for(predicate, timeout: float = 10.0, step: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # e.g. the domain does not exist yet
            pass
        time.sleep(step)
    return False


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start daemons (``daemon_factory(manifests, uri, **Daemon options)``), each stopped at
    the end of the test."""
    with daemons(tmp_path) as start:
        yield start


@contextlib.contextmanager
def daemons(tmp_path: Path) -> Iterator:
    """A factory of daemons, each stopped at the end."""
    started: list[Daemon] = []

    def start(manifests: Path, uri: str, **options) -> Daemon:  # type: ignore[no-untyped-def]
        d = Daemon(manifests, tmp_path / "state", uri, tmp_path, **options)
        started.append(d)
        return d

    try:
        yield start
    finally:
        for d in started:
            d.stop()
