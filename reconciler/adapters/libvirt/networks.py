"""libvirt networks: read them (raw, then the live model), define, start, remove."""

from __future__ import annotations

from typing import Any

import libvirt

from reconciler.adapters.libvirt.connection import (
    UNSUPPORTED,
    Connection,
    inactive_xml,
    translated,
)
from reconciler.core.errors import NotFoundError
from reconciler.core.observe import RawNetwork


class Networks(Connection):
    def read_raw_networks(self) -> tuple[RawNetwork, ...]:
        """Every network with its persistent XML: three listings and two calls per network.
        A network removed meanwhile is left out."""
        with translated("listing networks"):
            autostart = _names(self.conn.listAllNetworks(
                libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART))
            transient = _names(self.conn.listAllNetworks(
                libvirt.VIR_CONNECT_LIST_NETWORKS_TRANSIENT))
            networks = self.conn.listAllNetworks(0)
        out = []
        for net in networks:
            name = net.name()
            try:
                with translated(f"reading network {name}"):
                    active = bool(net.isActive())
                    out.append(RawNetwork(
                        name=name, active=active, persistent=name not in transient,
                        autostart=name in autostart,
                        xml=inactive_xml(net, libvirt.VIR_NETWORK_XML_INACTIVE),
                        ports=_ports(net) if active else None,
                        live_xml=str(net.XMLDesc(0)) if active else None))
            except NotFoundError:
                continue
        return tuple(out)

    def define_network(self, xml: str) -> None:
        with translated("defining network"):
            self.conn.networkDefineXML(xml)

    def start_network(self, name: str) -> None:
        with translated(f"starting network {name}"):
            self.conn.networkLookupByName(name).create()

    def set_network_autostart(self, name: str, enabled: bool) -> None:
        with translated(f"setting autostart of network {name}"):
            self.conn.networkLookupByName(name).setAutostart(1 if enabled else 0)

    def remove_network(self, name: str) -> None:
        with translated(f"removing network {name}"):
            net = self.conn.networkLookupByName(name)
            if net.isActive():
                net.destroy()
            net.undefine()

    def network_xml(self, name: str) -> str:
        with translated(f"reading network {name}"):
            return inactive_xml(self.conn.networkLookupByName(name),
                                libvirt.VIR_NETWORK_XML_INACTIVE)


def _names(objects: list[libvirt.virNetwork]) -> set[str]:
    return {obj.name() for obj in objects}


def _ports(net: Any) -> tuple[str, ...] | None:
    """The UUIDs of a network's ports (virNetworkListAllPorts); None where the driver has no
    ports (test:///)."""
    try:
        return tuple(sorted(port.UUIDString() for port in net.listAllPorts(0)))
    except libvirt.libvirtError as exc:
        # No ports API (test:///), or stopped since it was listed: its ports are not known.
        if exc.get_error_code() in (*UNSUPPORTED, libvirt.VIR_ERR_OPERATION_INVALID):
            return None
        raise
