"""Every graphics device and every listen of each is read: what a console exposes is never
"No changes" (issue 10, kind 7)."""

from __future__ import annotations

import pytest
from lxml import etree

from reconciler.core.xml.devices import read_graphics, set_graphics

CASES = [
    ("", "none"),
    ("<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>"
     "<listen type='address' address='127.0.0.1'/></graphics>", "vnc"),
    ("<graphics type='vnc' autoport='yes'><listen type='address'/></graphics>", "vnc"),
    ("<graphics type='spice' autoport='yes'><listen type='socket'/></graphics>", "spice"),
    ("<graphics type='vnc'><listen type='none'/></graphics>", "vnc"),
    # the instance: a listen on a libvirt network is on that network's address
    ("<graphics type='vnc' autoport='yes'><listen type='network' network='default'/>"
     "</graphics>", "vnc@network default"),
    ("<graphics type='vnc' listen='0.0.0.0'><listen type='address' address='0.0.0.0'/>"
     "</graphics>", "vnc@0.0.0.0"),
    ("<graphics type='vnc' listen='127.0.0.1'><listen type='address' address='127.0.0.1'/>"
     "<listen type='address' address='192.168.1.5'/></graphics>", "vnc@192.168.1.5"),
    # the instance: a second device on 0.0.0.0 beside the managed one
    ("<graphics type='vnc' listen='127.0.0.1'/><graphics type='spice' listen='0.0.0.0'/>",
     "vnc+spice@0.0.0.0"),
    ("<graphics type='vnc'/><graphics type='vnc'/>", "vnc+vnc"),
]


@pytest.mark.parametrize(("devices", "read"), CASES)
def test_graphics_read(devices: str, read: str) -> None:
    assert read_graphics(etree.fromstring(f"<devices>{devices}</devices>")) == read


@pytest.mark.parametrize(("devices", "_read"), CASES)
@pytest.mark.parametrize("kind", ["none", "vnc", "spice"])
def test_graphics_set_leaves_one_loopback_device(devices: str, _read: str, kind: str) -> None:
    root = etree.fromstring(f"<devices>{devices}</devices>")
    set_graphics(root, kind)
    assert read_graphics(root) == kind
