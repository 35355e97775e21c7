"""libvirt events for the daemon: they only say which domain changed; the loop re-reads all."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import libvirt

from reconciler.adapters.libvirt.connection import Connection, translated

_event_loop_started = False
_EVENT_IDS = {
    "lifecycle": libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
    "balloon": libvirt.VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
    "device-added": libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
    "device-removed": libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
}
_CLOSE_REASONS = {0: "error", 1: "end of file", 2: "keepalive timeout", 3: "client closed"}


def start_event_loop() -> None:
    """libvirt's default event loop in a daemon thread; needed before events can be received.
    Call it before opening the connections that should deliver events."""
    global _event_loop_started
    if _event_loop_started:
        return
    libvirt.virEventRegisterDefaultImpl()

    def loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
    _event_loop_started = True


class Events(Connection):
    def watch(self, on_event: Callable[[str, str], None],
              on_lost: Callable[[str], None]) -> None:
        """Call ``on_event(domain, kind)`` on domain lifecycle and device events, and
        ``on_lost(reason)`` when the connection drops (keepalive: 5s x 3)."""

        def domain_event(_conn: object, dom: libvirt.virDomain, *args: object) -> None:
            try:
                on_event(dom.name(), str(args[-1]) if args else "")
            except Exception:
                import structlog

                structlog.get_logger("reconciler.libvirt").exception("event callback failed")

        def closed(_conn: object, reason: int, _opaque: object) -> None:
            on_lost(_CLOSE_REASONS.get(reason, str(reason)))

        with translated("registering for libvirt events"):
            for name, event_id in _EVENT_IDS.items():
                self.conn.domainEventRegisterAny(None, event_id, domain_event, name)
            self.conn.registerCloseCallback(closed, None)
            with contextlib.suppress(libvirt.libvirtError):  # test:/// has no keepalive
                self.conn.setKeepAlive(5, 3)
