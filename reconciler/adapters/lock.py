"""One writer per instance: `apply` and `run` hold an exclusive lock named after their instance,
in one directory per host, so that no choice of state directory can split it (SPEC section 5.6).

The lock is ``flock(2)`` on ``<lock dir>/<instance>.lock``: the kernel releases it when its
holder exits, however (kill -9 included), so a file left behind never blocks anyone. The file
holds a line about its holder, for the refusal; the holder removes it when it lets go. It is
opened with ``O_NOFOLLOW`` and must be a regular file with one link: a symbolic link, FIFO,
directory or device there is refused, and nothing it leads to is truncated.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from reconciler.core import instance as instance_name
from reconciler.core.errors import LockedError, PermanentError
from reconciler.core.status import iso_time

RUN_DIR = Path("/run/reconciler")  # tmpfs: empty after a reboot, when no writer can be running
ENV = "RECONCILER_LOCK_DIR"
POLL = 0.1  # seconds between tries while waiting for the lock (--lock-timeout)


def directory() -> Path:
    """Where the locks of this host live (made if missing):

    - ``$RECONCILER_LOCK_DIR`` when set (every writer of an instance must see the same);
    - else ``/run/reconciler`` for root (an error if it cannot be made: a writer that picked
      another place would not exclude the others), and for a user who may write there (an
      operator can make it writable to a group with tmpfiles.d);
    - else the user's own ``$XDG_RUNTIME_DIR/reconciler``, or ``/tmp/reconciler-<uid>``
      (mode 0700; refused unless the user owns it and no one else may write it): such a lock
      excludes only that user's writers.

    Raises PermanentError when the directory cannot be made or is not safe."""
    chosen = os.environ.get(ENV)
    if chosen:
        return _ready(Path(chosen), private=False)
    if os.geteuid() == 0 or os.access(RUN_DIR, os.W_OK | os.X_OK):
        return _ready(RUN_DIR, private=False)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_absolute():
        return _ready(Path(runtime) / "reconciler", private=True)
    import tempfile  # a slow import, needed only here

    return _ready(Path(tempfile.gettempdir()) / f"reconciler-{os.geteuid()}", private=True)


def path(instance: str) -> Path:
    """The lock file of ``instance`` (see ``directory``). Raises PermanentError for a name that
    is no safe file name (``core.instance``)."""
    problem = instance_name.problem(instance)
    if problem:
        raise PermanentError(problem)
    return directory() / f"{instance}.lock"


@contextlib.contextmanager
def exclusive(instance: str, *, command: str, state_dir: Path | None = None,
              timeout: float = 0.0) -> Iterator[Path]:
    """Hold the writer lock of ``instance`` (yields its path), or raise LockedError naming the
    holder (its pid, command, state directory and since when): at once, or after waiting
    ``timeout`` seconds for it. ``command`` and ``state_dir`` describe this holder.

    Raises PermanentError when the lock cannot be opened (see the module)."""
    target = path(instance)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        fd = _open(target)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if time.monotonic() >= deadline:
                waited = f" (waited {timeout:g}s)" if timeout > 0 else ""
                raise LockedError(
                    f"another reconciler writes for instance {instance!r}: {holder}; only "
                    f"one apply or run per instance at a time (lock {target}){waited}"
                ) from None
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
            continue
        if _is_at(fd, target):
            break
        os.close(fd)  # its holder let go and removed it meanwhile: take the new one
    try:
        where = f", state dir {state_dir}" if state_dir is not None else ""
        line = f"pid {os.getpid()} ({command}) since {iso_time(time.time())}{where}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, line.encode(errors="replace"), 0)
        yield target
    finally:
        with contextlib.suppress(OSError):
            if _is_at(fd, target):  # removed while held: no one else can hold this file
                target.unlink()
        os.close(fd)


def _open(target: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermanentError(f"the lock {target} is a symbolic link; the lock never follows "
                                 "one: remove it") from exc
        if exc.errno in (errno.EISDIR, errno.ENXIO, errno.ENODEV):
            raise PermanentError(f"the lock {target} is not a regular file; remove it") from exc
        raise PermanentError(f"cannot open the lock {target}: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "has other hard links" if stat.S_ISREG(info.st_mode) else "is not a regular file"
        raise PermanentError(f"the lock {target} {what}; remove it")
    return fd


def _is_at(fd: int, target: Path) -> bool:
    """Whether the open file ``fd`` is still the one at ``target``."""
    try:
        there = os.stat(target, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)


def _ready(folder: Path, *, private: bool) -> Path:
    """``folder``, made if missing; a private one (a user's own) must be a real directory that
    only its owner, this user, may write."""
    try:
        folder.mkdir(mode=0o700 if private else 0o755, parents=not private, exist_ok=True)
        info = os.stat(folder, follow_symlinks=not private)
    except OSError as exc:
        raise PermanentError(f"cannot make the lock directory {folder}: {exc.strerror}; "
                             f"set {ENV} to a directory every writer on this host shares"
                             ) from exc
    if not stat.S_ISDIR(info.st_mode):
        raise PermanentError(f"the lock directory {folder} is not a directory")
    if private and (info.st_uid != os.geteuid() or info.st_mode & 0o022):
        raise PermanentError(f"the lock directory {folder} is not this user's own (owned by "
                             f"uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}); "
                             "remove it")
    return folder
