"""A command run under a real pseudo-terminal: what a person at a terminal sees (the prompt,
colour, live progress)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

# Any escape sequence: colour (SGR), cursor movement, erase, rich's live redraws.
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """``text`` without escape sequences and carriage returns."""
    return ESCAPE.sub("", text).replace("\r", "")


class Terminal:
    """`reconciler ARGS` with its stdin, stdout and stderr on a pseudo-terminal; ``env``: more
    environment (``NO_COLOR``)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.shells.cli", *args],
            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "TERM": "xterm",
                 **(env or {})})
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.seen}"
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child is gone: EIO
                    assert text in self.seen, f"no {text!r} in:\n{self.seen}"
        return self.seen

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, self.seen
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        while True:  # what is left after it exited
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk.decode(errors="replace")
        code = self.proc.wait(timeout)
        os.close(self.master)
        return code
