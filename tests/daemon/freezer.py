"""A Unix-socket proxy in front of libvirtd's socket that a test can freeze: while frozen it
passes no byte either way, as a libvirtd that hangs would (stopped, deadlocked, swapping),
for the one client behind it and no one else on the host. New connections are accepted and
left unanswered while frozen, as a libvirtd that is starting up leaves them."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from pathlib import Path

LIBVIRT_SOCKET = "/run/libvirt/libvirt-sock"


class FrozenLibvirt:
    def __init__(self, folder: Path, upstream: str = LIBVIRT_SOCKET) -> None:
        self.path = folder / "libvirt-proxy.sock"
        self.upstream = upstream
        self.frozen = threading.Event()
        self._closed = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(64)
        self._server.setblocking(False)
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._pending: list[socket.socket] = []  # accepted while frozen, not yet connected
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="libvirt-proxy", daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.path}"

    def freeze(self) -> None:
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()

    def _run(self) -> None:
        while not self._closed.is_set():
            for key, _ in self._selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._server:
                    with contextlib.suppress(BlockingIOError):
                        client, _ = self._server.accept()
                        self._pending.append(client)
                    continue
                if self.frozen.is_set():
                    continue
                self._pass(sock)
            if not self.frozen.is_set():
                while self._pending:
                    self._connect(self._pending.pop())
            if self.frozen.is_set():
                # Nothing is read while frozen: stop selecting the sockets (they stay readable).
                for sock in list(self._pairs):
                    with contextlib.suppress(KeyError):
                        self._selector.unregister(sock)
                self.frozen_wait()
                for sock in list(self._pairs):
                    with contextlib.suppress(ValueError, KeyError):
                        self._selector.register(sock, selectors.EVENT_READ)
        for sock in [*self._pairs, *self._pending]:
            sock.close()
        self._server.close()

    def frozen_wait(self) -> None:
        while self.frozen.is_set() and not self._closed.is_set():
            with contextlib.suppress(BlockingIOError):
                client, _ = self._server.accept()
                self._pending.append(client)
            self._closed.wait(0.05)

    def _connect(self, client: socket.socket) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.connect(self.upstream)
        except OSError:
            client.close()
            server.close()
            return
        self._pairs[client], self._pairs[server] = server, client
        for sock in (client, server):
            self._selector.register(sock, selectors.EVENT_READ)

    def _pass(self, sock: socket.socket) -> None:
        other = self._pairs.get(sock)
        if other is None:
            return
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        for end in (sock, other):  # one side closed: close both
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(end)
            self._pairs.pop(end, None)
            end.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
