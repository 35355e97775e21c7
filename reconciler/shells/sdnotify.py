"""systemd's notify protocol (Type=notify): a datagram to $NOTIFY_SOCKET. A no-op without it.

Never blocks. $NOTIFY_SOCKET is a Unix datagram socket: once its receive queue is full (10
datagrams by default, ``net.unix.max_dgram_qlen``, when systemd does not keep up), a blocking
``sendto`` waits until systemd reads one, for good if it never does (unix(7)). Messages are
sent with MSG_DONTWAIT instead: one that cannot be sent at once is dropped and counted."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable


class Notifier:
    def __init__(self, address: str | None = None,
                 on_drop: Callable[[], None] | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address or None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_seconds = int(usec) / 1e6 if watched else None
        self.on_drop = on_drop  # called (in the sending thread) for each message dropped
        self.dropped = 0  # messages that could not be sent
        self._ready_lost = False  # READY=1 was dropped: it goes with the next message
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def send(self, **fields: object) -> bool:
        """E.g. send(READY=1, STATUS="3 VMs in sync"). False when the message was dropped
        (systemd's queue full, or no systemd listening): it is counted, never waited for."""
        if not self.address:
            return True
        with self._lock:
            if self._ready_lost and "READY" not in fields:
                fields = {"READY": 1, **fields}
            text = "\n".join(f"{key}={str(value).replace(chr(10), ' ')}"
                             for key, value in fields.items())
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM
                                               | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                self._sock.sendto(text.encode(), socket.MSG_DONTWAIT, self.address)
            except OSError:  # EAGAIN: the queue is full; ENOENT, ECONNREFUSED: nobody there
                self.dropped += 1
                self._ready_lost = self._ready_lost or "READY" in fields
                sent = False
            else:
                self._ready_lost = False
                sent = True
        if not sent and self.on_drop is not None:
            self.on_drop()
        return sent

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
