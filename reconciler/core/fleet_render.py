"""The fleet plan as text, JSON and a pull-request comment, grouped by host. Pure."""

from __future__ import annotations

from reconciler import __version__
from reconciler.core import render
from reconciler.core.fleetplan import FleetPlan, HostPlan
from reconciler.core.markdown import MARKER, plan_markdown
from reconciler.core.plan import Header, Kind


def summary_text(fleet: FleetPlan) -> str:
    """``Fleet: 3 hosts (1 not planned): 2 to create, 1 to update, 0 to destroy, 1 to move,
    0 blocked.``"""
    missing = len(fleet.unreachable)
    hosts = f"{len(fleet.hosts)} host{'' if len(fleet.hosts) == 1 else 's'}"
    return (f"Fleet: {hosts}{f' ({missing} not planned)' if missing else ''}: "
            f"{fleet.count(Kind.CREATE)} to create, {fleet.count(Kind.UPDATE)} to update, "
            f"{fleet.count(Kind.DESTROY)} to destroy, {len(fleet.moves)} to move, "
            f"{fleet.blocked_count} blocked.")


def _title(entry: HostPlan) -> str:
    return f"Host {entry.host} ({entry.uri})"


def fleet_text(fleet: FleetPlan, header: Header | None = None) -> str:
    """Each host's plan under its name, the moves, the fleet summary, and the header's
    commit line."""
    out = []
    for entry in fleet.hosts:
        if entry.plan is None:
            out.append(f"{_title(entry)}: not planned: {entry.error}\n")
            continue
        snapshot = (f", from a snapshot taken {entry.header.snapshot}"
                    if entry.header and entry.header.snapshot else "")
        out.append(f"{_title(entry)}{snapshot}\n" + render.plan_text(entry.plan))
    if fleet.moves:
        width = max(len(m.vm) for m in fleet.moves)
        out.append("Moves:\n" + "".join(f"> {m.vm:<{width}}   {m.text}\n"
                                        for m in fleet.moves))
    tail = summary_text(fleet) + "\n"
    if header is not None:
        tail += render.header_text(header) + "\n"
    return "\n".join(out) + ("\n" if out else "") + tail


def fleet_json(fleet: FleetPlan, header: Header | None = None) -> dict[str, object]:
    """``{"kind": "FleetPlan", "summary": {...}, "moves": [...], "hosts": [{"host", "uri",
    "error", "plan": <a plan as schemas/plan.v1.json>}], "problems": [...]}``."""
    return {
        "apiVersion": "reconciler/v1",
        "kind": "FleetPlan",
        "version": __version__,
        **({"header": render.header_json(header)} if header is not None else {}),
        "hasChanges": fleet.has_changes,
        "summary": {"hosts": len(fleet.hosts), "notPlanned": len(fleet.unreachable),
                    "create": fleet.count(Kind.CREATE), "update": fleet.count(Kind.UPDATE),
                    "destroy": fleet.count(Kind.DESTROY), "move": len(fleet.moves),
                    "blocked": fleet.blocked_count},
        "moves": [{"name": m.vm, "from": m.source, "to": m.destination,
                   "live": m.live, "symbol": ">", "text": m.text} for m in fleet.moves],
        "hosts": [{"host": e.host, "uri": e.uri, "error": e.error or None,
                   "plan": None if e.plan is None else render.plan_json(
                       e.plan, header=e.header)} for e in fleet.hosts],
        "problems": [p.as_dict() for p in fleet.problems],
    }


def fleet_markdown(fleet: FleetPlan, header: Header | None = None) -> str:
    """One comment for the whole fleet: the summary, the moves, then a section per host."""
    lines = [f"{MARKER} instance={header.instance if header else ''} host=fleet -->",
             "### reconciler fleet plan", "", f"**{summary_text(fleet)}**", ""]
    if header is not None:
        lines += [render.header_text(header), ""]
    if fleet.moves:
        lines += ["| | VM | Move |", "| --- | --- | --- |"]
        lines += [f"| `>` | `{m.vm}` | {m.text} |" for m in fleet.moves]
        lines.append("")
    for entry in fleet.hosts:
        if entry.plan is None:
            lines += [f"#### {_title(entry)}", "", "> [!WARNING]", f"> not planned: "
                      f"{' '.join(entry.error.split())}", ""]
            continue
        body = plan_markdown(entry.plan, (), entry.header).splitlines()
        body = [line.replace("### reconciler plan", "#### reconciler plan", 1)
                for line in body if not line.startswith(MARKER)]
        lines += [*body, ""]
    if fleet.problems:
        lines += ["#### Manifest problems", ""]
        lines += [f"- `{p.file}:{p.line}`: {p.field}: {p.message}" for p in fleet.problems]
    return "\n".join(lines).rstrip() + "\n"
