"""Reads of the fleet's other hosts, over the libvirt URIs of their Host manifests: which of
some VMs already run there. Read-only; each host is given a bounded time to answer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import libvirt
from lxml import etree

from reconciler.core.errors import TransientError
from reconciler.core.xml.common import read_mark

PEER_TIMEOUT = 10.0  # seconds a peer host has to answer (connect and every lookup)


def managed_here(uri: str, names: Sequence[str], instance: str,
                 *, timeout: float = PEER_TIMEOUT) -> frozenset[str]:
    """Which of ``names`` are domains on ``uri`` that the reconciler ``instance`` manages (its
    mark names the instance). A domain of that name made by hand does not count.

    Raises ``TransientError`` when the host cannot be read (no answer within ``timeout``
    seconds, connection refused, authentication failed)."""
    box: dict[str, Any] = {}

    def read() -> None:
        try:
            conn = libvirt.openReadOnly(uri)
        except libvirt.libvirtError as exc:
            box["error"] = exc.get_error_message() or str(exc)
            return
        try:
            found = set()
            for name in names:
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                        continue
                    raise
                mark = read_mark(etree.fromstring(dom.XMLDesc(0).encode()))
                if mark is not None and mark.instance == instance:
                    found.add(name)
            box["found"] = frozenset(found)
        except libvirt.libvirtError as exc:
            box["error"] = exc.get_error_message() or str(exc)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    reader = threading.Thread(target=read, name="libvirt-peer", daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise TransientError(f"{uri}: no answer within {timeout:g} s")
    if "error" in box:
        raise TransientError(f"{uri}: {box['error']}")
    result: frozenset[str] = box["found"]
    return result
