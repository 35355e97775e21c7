"""File-change wake-ups for the daemon (watchdog's inotify observer), following the manifest
directory when it is replaced.

An inotify watch belongs to the directory (the inode) it was set on, not to its path
(inotify(7)): after ``rm -rf DIR; mkdir DIR``, ``mv DIR DIR.old; mv new DIR`` or a symbolic
link swapped over it (``ln -sfn release-2 current``, as Capistrano deploys), it reports
nothing more about the path. So the identity of what the path leads to (device and inode,
symbolic links followed) is checked every ``POLL`` seconds, on each event in the path's parent
directory and when the watched directory itself goes; when it changed, the watch is set up
again on what the path leads to now, and the daemon is woken to read it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

POLL = 1.0  # seconds between looks at the watched directory's identity
Identity = tuple[int, int]  # (st_dev, st_ino)


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, wake: Callable[[], None],
                 gone: Callable[[], None]) -> None:
        self.root = root
        self.wake = wake
        self.gone = gone

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type in ("deleted", "moved") and Path(str(event.src_path)) == self.root:
            self.gone()  # the watched directory itself was removed or moved away
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw and _relevant(self.root, Path(str(raw))):
                self.wake()
                return


class _Parent(FileSystemEventHandler):
    """Events in the watched path's parent: one may have replaced the path."""

    def __init__(self, nudge: Callable[[], None]) -> None:
        self.nudge = nudge

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write", "closed", "modified"):
            self.nudge()


def _relevant(root: Path, path: Path) -> bool:
    """A manifest, or a folder that may hold some; nothing under hidden folders (.git)."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    if any(part.startswith(".") for part in parts):
        return False
    return not parts or path.suffix in (".yaml", ".yml") or not path.suffix


def identity(path: Path) -> Identity | None:
    """What ``path`` leads to (links followed), or None when it is no directory now."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class Watch:
    """Watch ``root`` (a directory, recursively; for a file, its directory) and call
    ``wake()`` (from a watcher thread) when a manifest below it may have changed, or when
    what the path leads to was replaced. ``on_error(message)``: the watch could not be set up
    (e.g. inotify's ``max_user_watches`` reached); it is tried again at each ``POLL``."""

    def __init__(self, root: Path, wake: Callable[[], None], *,
                 on_error: Callable[[str], None] | None = None, poll: float = POLL) -> None:
        self.root = root
        self.target = root  # for a file, its directory (known once the poller has looked)
        self.wake = wake
        self.on_error = on_error
        self.poll = poll
        self._observer = Observer()
        self._observer.daemon = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._nudge = threading.Event()  # look now (set from the observer's thread)
        self._identity: Identity | None = None
        self._watch: ObservedWatch | None = None
        self._gone = False
        self._failed: str | None = None
        self._first = threading.Event()  # the first look is done
        self._late = False  # ... after ``start`` stopped waiting for it
        self._poller = threading.Thread(target=self._poll, name="watch-identity", daemon=True)

    @property
    def armed(self) -> bool:
        """Whether an inotify watch is set on what the path leads to."""
        return self._watch is not None

    def start(self, wait: float = 2.0) -> None:
        """Start watching; the first look at the file system is waited for ``wait`` seconds
        at most (a file system that hangs): then it is made as soon as it can, and wakes."""
        self._observer.start()
        self._poller.start()
        if not self._first.wait(wait):
            self._late = True

    def _begin(self) -> None:
        if self.root.is_file():
            self.target = self.root.parent
        parent = self.target.parent
        if parent != self.target:
            with contextlib.suppress(OSError):  # the periodic look still notices it
                self._observer.schedule(_Parent(self._nudge.set), str(parent),
                                        recursive=False)
        self.check(first=True)
        self._first.set()
        if self._late:
            self.wake()

    def stop(self) -> None:
        self._stop.set()
        self._nudge.set()
        self._observer.stop()

    def _mark_gone(self) -> None:
        self._gone = True
        self._nudge.set()

    def _poll(self) -> None:
        """The one thread that sets watches up (the observer's own thread only nudges it: it
        holds the observer's lock while it hands out events)."""
        self._begin()
        while True:
            self._nudge.wait(self.poll)
            self._nudge.clear()
            if self._stop.is_set():
                return
            self.check()

    def check(self, *, first: bool = False) -> None:
        """Set the watch up again if what the path leads to is not what is watched (in the
        poll thread only)."""
        with self._lock:
            now = identity(self.target)
            changed = now != self._identity or self._gone
            if changed and self._watch is not None:
                # Its emitter may have ended already (the directory went).
                with contextlib.suppress(KeyError, ValueError, RuntimeError, OSError):
                    self._observer.unschedule(self._watch)
                self._watch = None
            self._identity, self._gone = now, False
            if now is not None and self._watch is None:
                self._arm()
        if changed and not first:
            self.wake()

    def _arm(self) -> None:
        # The directory the path leads to now, by its own name: inotify would watch a
        # symbolic link itself, and events name paths below the directory watched.
        real = Path(os.path.realpath(self.target))
        try:
            self._watch = self._observer.schedule(_Handler(real, self.wake, self._mark_gone),
                                                  str(real), recursive=True)
        except OSError as exc:
            message = f"cannot watch {self.target}: {exc}"
            if message != self._failed and self.on_error is not None:
                self.on_error(message)
            self._failed = message
            return
        self._failed = None
