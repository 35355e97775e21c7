"""One writer per host: apply and run hold an exclusive lock in the state directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from reconciler.core.errors import LockedError, PermanentError


@contextlib.contextmanager
def exclusive(state_dir: Path, *, command: str) -> Iterator[None]:
    """Hold ``<state_dir>/lock`` or raise LockedError naming the holder at once."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PermanentError(f"cannot open the lock in {state_dir}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(f"another reconciler holds {state_dir / 'lock'} ({holder}); "
                              "only one apply or run may write at a time") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({command})\n".encode(), 0)
        yield
    finally:
        os.close(fd)
