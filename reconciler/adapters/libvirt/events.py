"""libvirt events for the daemon: they only say which object changed; the loop re-reads all."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import libvirt

from reconciler.adapters.libvirt.connection import Connection, translated

_event_loop_started = False
_DOMAIN_EVENTS = {
    "lifecycle": libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
    "balloon": libvirt.VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
    "device-added": libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
    "device-removed": libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
}
_CLOSE_REASONS = {0: "error", 1: "end of file", 2: "keepalive timeout", 3: "client closed"}
# Keepalive (virConnectSetKeepAlive): a probe after KEEPALIVE_INTERVAL seconds without a
# message from libvirtd, and the connection closed after KEEPALIVE_COUNT probes unanswered, so
# a call in flight to a libvirtd that hangs fails after (count + 1) x interval = 20 s. It needs
# libvirt's event loop running (``start_event_loop``).
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3

EventHandler = Callable[[str, str, str], None]  # (kind: domain|network|pool, name, what)


def start_event_loop() -> None:
    """libvirt's default event loop in a daemon thread; needed before events can be received
    and for keepalive. Call it before opening the connections that should deliver events."""
    global _event_loop_started
    if _event_loop_started:
        return
    libvirt.virEventRegisterDefaultImpl()

    def loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
    _event_loop_started = True


def _guarded(on_event: EventHandler, kind: str, obj: object, what: str) -> None:
    try:
        on_event(kind, obj.name(), what)  # type: ignore[attr-defined]
    except Exception:
        import structlog

        structlog.get_logger("reconciler.libvirt").exception("event callback failed")


class Events(Connection):
    def watch(self, on_event: EventHandler, on_lost: Callable[[str], None]) -> None:
        """Call ``on_event(kind, name, what)`` on domain lifecycle and device events and on
        network and storage pool lifecycle events (kind ``domain``, ``network``, ``pool``),
        and ``on_lost(reason)`` when the connection drops: libvirtd went away, or answered no
        keepalive probe for 20 s (see KEEPALIVE_INTERVAL). Drivers without keepalive or
        without network or pool events (test:///) go without them.

        Raises TransientError when libvirtd does not take the registrations."""

        def domain_event(_conn: object, dom: libvirt.virDomain, *args: object) -> None:
            _guarded(on_event, "domain", dom, str(args[-1]) if args else "")

        def network_event(_conn: object, net: libvirt.virNetwork, *_args: object) -> None:
            _guarded(on_event, "network", net, "lifecycle")

        def pool_event(_conn: object, pool: libvirt.virStoragePool, *_args: object) -> None:
            _guarded(on_event, "pool", pool, "lifecycle")

        def closed(_conn: object, reason: int, _opaque: object) -> None:
            on_lost(_CLOSE_REASONS.get(reason, str(reason)))

        # Keepalive first: the registrations below are calls that a hung libvirtd would not
        # answer either.
        with contextlib.suppress(libvirt.libvirtError):  # test:/// has no keepalive
            self.conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        with translated("registering for libvirt events"):
            self.conn.registerCloseCallback(closed, None)
            for name, event_id in _DOMAIN_EVENTS.items():
                self.conn.domainEventRegisterAny(None, event_id, domain_event, name)
        with contextlib.suppress(libvirt.libvirtError):  # a driver without them
            self.conn.networkEventRegisterAny(None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE,
                                              network_event, None)
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.storagePoolEventRegisterAny(
                None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, pool_event, None)
