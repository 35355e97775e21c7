"""The one package that talks to libvirt: named operations, whose libvirt errors become the
project's own (``connection.translated``). What it reads it returns as raw values
(``reconciler.core.observe.RawDomain`` ...), which the pure ``reconciler.core.observe`` turns
into the live model (``reconciler.adapters.assemble`` with the parse cache); ``read_live``
does both for the domains.

Modules: ``connection`` (open, close, errors, the domain type), ``states`` (libvirt's state and
reason constants as words), ``inventory`` (every domain at once, with the parse cache),
``domains`` (operations on one domain), ``networks``, ``storage`` (pools and volumes),
``events`` (the daemon's event loop and ``watch``), ``migration`` (moves between hosts),
``peers`` (reads of the fleet's other hosts).
"""

from __future__ import annotations

from reconciler.adapters.libvirt.connection import library_version, translated
from reconciler.adapters.libvirt.domains import Domains
from reconciler.adapters.libvirt.events import Events, start_event_loop
from reconciler.adapters.libvirt.inventory import Inventory
from reconciler.adapters.libvirt.migration import Migration
from reconciler.adapters.libvirt.networks import Networks
from reconciler.adapters.libvirt.storage import Storage
from reconciler.core.observe import POOL_MARKER, VolumeKey


class Libvirt(Inventory, Domains, Networks, Storage, Events, Migration):
    """A connection (``Libvirt(uri, readonly=False)``) and the operations the reconciler needs
    on it; each comes from the module of its kind."""


__all__ = ["POOL_MARKER", "Libvirt", "VolumeKey", "library_version", "start_event_loop",
           "translated"]
