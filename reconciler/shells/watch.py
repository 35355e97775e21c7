"""File-change wake-ups for the daemon (watchdog's inotify observer)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, wake: Callable[[], None]) -> None:
        self.root = root
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw and _relevant(self.root, Path(str(raw))):
                self.wake()
                return


def _relevant(root: Path, path: Path) -> bool:
    """A manifest, or a folder that may hold some; nothing under hidden folders (.git)."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    if any(part.startswith(".") for part in parts):
        return False
    return not parts or path.suffix in (".yaml", ".yml") or not path.suffix


def watch(root: Path, wake: Callable[[], None]) -> BaseObserver | None:
    """Start watching ``root`` recursively; None when it cannot be watched (missing)."""
    target = root if root.is_dir() else root.parent
    if not target.is_dir():
        return None
    observer = Observer()
    observer.schedule(_Handler(target, wake), str(target), recursive=True)
    observer.daemon = True
    observer.start()
    return observer
