"""systemd's notify protocol (Type=notify): a datagram to $NOTIFY_SOCKET. A no-op without it."""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address or None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_seconds = int(usec) / 1e6 if watched else None

    def send(self, **fields: object) -> None:
        """E.g. send(READY=1, STATUS="3 VMs in sync")."""
        if not self.address:
            return
        text = "\n".join(f"{key}={str(value).replace(chr(10), ' ')}"
                         for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(text.encode())
        except OSError:
            pass  # systemd gone or socket missing: nothing to tell
