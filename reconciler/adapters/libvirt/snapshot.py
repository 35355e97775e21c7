"""Taking a host snapshot (see ``reconciler.adapters.snapshot`` for what it holds and how plans
read it): every read a plan makes, done once, over any URI, read-only."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from reconciler import __version__
from reconciler.adapters.libvirt import Libvirt
from reconciler.adapters.snapshot import HostFacts, Snapshot
from reconciler.core import observe


def take(hv: Libvirt, roots: Iterable[str] = ()) -> Snapshot:
    """Read everything a plan may read of the host behind ``hv``: every domain (both
    definitions, state and reason, flags), network (both definitions, ports) and pool (sizes,
    volume names), every volume of every active pool (its XML: capacity, format, backing
    file), and the host's facts (free memory, interfaces, vCPU limit, routes, and on a local
    connection the real paths of ``roots`` (the storage roots), of every pool's directory and
    of every file a disk names). Raises ``ReconcilerError`` when libvirt cannot be read."""
    taken = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    domains = hv.read_raw_domains()
    networks = hv.read_raw_networks()
    pools = hv.read_raw_pools()
    volumes = tuple(v for p in pools if p.active for v in hv.read_raw_volumes(p.name))
    paths = [*roots]
    paths += [path for p in pools if (path := observe.live_pool(p).config.path)]
    paths += [path for d in domains
              for path in observe.domain_refs(observe.parse_domain(d)).files]
    facts = HostFacts(free_memory=hv.free_memory(), interfaces=hv.host_interfaces(),
                      max_vcpus=hv.max_vcpus(), routes=hv.host_routes(),
                      real_paths=hv.real_paths(dict.fromkeys(paths)))
    return Snapshot(uri=hv.uri, hostname=hv.hostname(),
                    taken=taken.isoformat().replace("+00:00", "Z"), version=__version__,
                    domains=domains, networks=networks, pools=pools, volumes=volumes,
                    host=facts)
