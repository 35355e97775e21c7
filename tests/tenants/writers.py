"""`reconciler run` as a subprocess that holds its instance's writer lock, for the tests of one
writer per instance."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

RECONCILER = str(Path(sys.executable).with_name("reconciler"))


class Writer:
    """A daemon over ``manifests`` with its own state directory, started and ready (its lock
    taken: it logs "started" only once it holds it)."""

    def __init__(self, manifests: Path, state_dir: Path, uri: str, log: Path,
                 *extra: str, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self.log = open(log, "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [RECONCILER, "run", "--connect", uri, "--state-dir", str(state_dir),
             "--interval", "30", "--log-format", "json", "--metrics-addr", "off", *extra,
             str(manifests)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.pid = self.proc.pid

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def wait_started(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"event": "started"' in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited {self.proc.returncode}:\n"
                                     f"{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"the daemon did not start:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code


@contextlib.contextmanager
def writer(manifests: Path, state_dir: Path, uri: str, log: Path,
           *extra: str) -> Iterator[Writer]:
    """A running daemon, stopped (SIGTERM, else SIGKILL) at the end."""
    w = Writer(manifests, state_dir, uri, log, *extra)
    try:
        w.wait_started()
        yield w
    finally:
        w.stop()
