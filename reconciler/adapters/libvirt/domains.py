"""Operations on one domain: define, start, stop, undefine, live changes, metadata."""

from __future__ import annotations

import libvirt

from reconciler.adapters.libvirt.connection import UNSUPPORTED, Connection, translated
from reconciler.adapters.libvirt.states import is_running
from reconciler.core.model.common import Mark
from reconciler.core.model.vm import LiveHold

_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


class Domains(Connection):
    def domain_xml(self, name: str, *, inactive: bool = True) -> str:
        """The persistent definition (``inactive``), else the running one."""
        with translated(f"reading domain {name}"):
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
            return str(self._dom(name).XMLDesc(flags))

    def domain_state(self, name: str) -> tuple[bool, int | None]:
        """(running, domain id); paused, blocked and PM-suspended domains run."""
        with translated(f"reading state of {name}"):
            dom = self._dom(name)
            state, _reason = dom.state()
            running = is_running(state)
            return running, dom.ID() if running else None

    def define(self, xml: str) -> None:
        with translated("defining domain"):
            self.conn.defineXML(xml)

    def start(self, name: str) -> None:
        with translated(f"starting {name}"):
            self._dom(name).create()

    def resume(self, name: str) -> None:
        """Resume a paused domain."""
        with translated(f"resuming {name}"):
            self._dom(name).resume()

    def shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI). Returns at once."""
        with translated(f"shutting down {name}"):
            self._dom(name).shutdown()

    def power_off(self, name: str) -> None:
        with translated(f"powering off {name}"):
            dom = self._dom(name)
            if dom.isActive():
                dom.destroy()

    def undefine(self, name: str) -> None:
        """Undefine, with managed save, snapshot metadata, checkpoints and NVRAM."""
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                 | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        with translated(f"undefining {name}"):
            dom = self._dom(name)
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in UNSUPPORTED:
                    raise
                dom.undefine()

    def set_autostart(self, name: str, enabled: bool) -> None:
        with translated(f"setting autostart of {name}"):
            self._dom(name).setAutostart(1 if enabled else 0)

    def set_vcpus_live(self, name: str, count: int) -> None:
        with translated(f"setting live vCPUs of {name}"):
            self._dom(name).setVcpusFlags(count, _LIVE)

    def set_memory_live(self, name: str, size: int) -> None:
        """Balloon the running domain to ``size`` bytes (libvirt takes KiB)."""
        with translated(f"setting live memory of {name}"):
            self._dom(name).setMemoryFlags(size // 1024, _LIVE)

    def set_hold(self, name: str, hold: LiveHold | None) -> None:
        """Record (or clear) a live change the VM did not take, on the running domain only."""
        from reconciler.core.xml import common as xmlcommon

        with translated(f"recording live state of {name}"):
            self._dom(name).setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                _bare(xmlcommon.hold_xml(hold)) if hold else None,
                xmlcommon.HOLD_KEY if hold else None,
                xmlcommon.HOLD_NS, _LIVE)

    def set_mark(self, name: str, mark: Mark) -> None:
        """Record the tool's mark in the persistent definition, and on the running domain if it
        runs; nothing else of the domain changes (adoption)."""
        from reconciler.core.xml import common as xmlcommon

        with translated(f"recording metadata of {name}"):
            dom = self._dom(name)
            flags = _CONFIG | (_LIVE if dom.isActive() else 0)
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, _bare(xmlcommon.mark_xml(mark)),
                            xmlcommon.MARK_KEY, xmlcommon.NS, flags)

    def attach_live(self, name: str, device_xml: str) -> None:
        with translated(f"hot-plugging a device into {name}"):
            self._dom(name).attachDeviceFlags(device_xml, _LIVE)

    def detach_live(self, name: str, device_xml: str) -> None:
        with translated(f"unplugging a device from {name}"):
            self._dom(name).detachDeviceFlags(device_xml, _LIVE)

    def block_resize(self, name: str, target: str, size: int) -> None:
        """Grow the running domain's disk ``target`` (vda, ...) to ``size`` bytes."""
        with translated(f"growing disk {target} of {name}", settled=True):
            self._dom(name).blockResize(target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)

    def eject_live(self, name: str, device_xml: str) -> None:
        """Take the medium out of a CD-ROM of the running domain (``device_xml`` has no
        source), even when the guest has locked the tray."""
        with translated(f"ejecting a CD-ROM of {name}"):
            self._dom(name).updateDeviceFlags(
                device_xml, _LIVE | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE)


def _bare(xml: str) -> str:
    """``xml`` without namespaces: setMetadata puts the element in the namespace it is given and
    fails ("failed to create a new XML namespace") when the element already declares one."""
    from lxml import etree

    root = etree.fromstring(xml.encode())
    for element in root.iter():
        element.tag = etree.QName(element).localname
    etree.cleanup_namespaces(root)
    return str(etree.tostring(root, encoding="unicode"))
