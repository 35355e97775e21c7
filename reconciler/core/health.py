"""Whether the declared VMs are healthy, from what was observed: for ``status --wait``. Pure.

A VM is healthy when its domain exists and is in the state its manifest asks for (running, or
shut off for ``state: stopped``), and, when the manifest asks for the guest agent
(``guestAgent: true``), the agent answers on its channel: libvirt reports the channel's state
(``<target ... state='connected'/>``) from the virtio port the agent opens in the guest."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core.model.vm import DesiredVM, LiveVM, PowerState


def unhealthy(desired: Iterable[DesiredVM], live: Iterable[LiveVM]) -> list[tuple[str, str]]:
    """(VM name, why it is not healthy) of each declared VM that is not, in manifest order;
    VMs the manifests suspend (annotation reconciler/suspend) are left out."""
    found = {vm.name: vm for vm in live}
    out = []
    for want in desired:
        if want.suspend:
            continue
        spec = want.spec
        vm = found.get(spec.name)
        if vm is None:
            out.append((spec.name, "no domain"))
        elif spec.state == PowerState.RUNNING and vm.state != "running":
            out.append((spec.name, f"{vm.state}" + (f" ({vm.reason})" if vm.reason else "")))
        elif spec.state == PowerState.STOPPED and vm.running:
            out.append((spec.name, f"{vm.state}, to be stopped"))
        elif spec.state == PowerState.RUNNING and spec.guest_agent and vm.agent != "connected":
            out.append((spec.name, "guest agent not connected" if vm.agent is not None
                        else "no guest agent channel (plugged at the next start)"))
    return out
