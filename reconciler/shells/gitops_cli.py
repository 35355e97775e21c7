"""The GitOps commands: `snapshot` (a host for plans in CI), `approve` (a destroy held by
prune: confirm), `suspend` / `resume` (the daemon's pause). Registered on the command group by
``cli``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.shells.options import (
    EXIT_ERROR,
    EXIT_OK,
    common,
    connect_libvirt,
    manifest_path,
    source_of,
)

if TYPE_CHECKING:
    from reconciler.adapters import config as configuration


@click.command()
@click.argument("name")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State directory (default /var/lib/reconciler).")
@common
def approve(*, name: str, path: Path | None, cfg: configuration.Config, connect: str,
            instance: str, state_dir: Path | None) -> int:
    """Let a destroy held by prune: confirm go ahead (NAME: a VM, network/NAME, pool/NAME).
    Exit 1 when nothing waits for approval under that name."""
    from reconciler import pipeline
    from reconciler.adapters import approvals
    from reconciler.core import render
    from reconciler.core.model.vm import LiveVM
    from reconciler.core.plan import Why

    states = state_dir or Path(cfg.stateDir)
    source = source_of(manifest_path(path, cfg), cfg, instance, None, False, "confirm", states)
    hv = connect_libvirt(connect, readonly=True)
    try:
        planned = pipeline.make_plan(source, hv)
    finally:
        hv.close()
    action = next((a for a in planned.plan.actions if a.label == name), None)
    if action is None or action.reason is None or action.reason.why != Why.PENDING_DESTROY:
        what = (render.describe(action) if action is not None else
                "no destroy of it waits for approval (with prune: confirm, a managed VM, "
                "network or pool whose manifest is gone waits)")
        click.echo(f"Nothing to approve for {name}: {what}", err=True)
        return EXIT_ERROR
    uuid = action.live.uuid if isinstance(action.live, LiveVM) else ""
    approvals.approve(states, instance, name, uuid)
    click.echo(f"Approved: the next apply or reconcile of instance {instance} destroys {name}"
               + (f" (domain {uuid})" if uuid else "") + ".")
    return EXIT_OK


@click.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State directory (default /var/lib/reconciler).")
@click.option("--reason", default="", help="Why (shown in status).")
@common
def suspend(*, cfg: configuration.Config, instance: str, state_dir: Path | None,
            reason: str) -> int:
    """Pause the daemon: it keeps observing and reporting, and applies nothing, until
    `reconciler resume` (persisted: it survives restarts)."""
    from reconciler.adapters import pause

    record = pause.suspend(state_dir or Path(cfg.stateDir), instance, reason)
    click.echo(f"Instance {instance} suspended since {record.get('since')} by "
               f"{record.get('by')}: the daemon applies nothing until `reconciler resume`.")
    return EXIT_OK


@click.command()
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State directory (default /var/lib/reconciler).")
@common
def resume(*, cfg: configuration.Config, instance: str, state_dir: Path | None) -> int:
    """Lift `reconciler suspend`: the daemon applies changes again from its next reconcile."""
    from reconciler.adapters import pause

    if pause.resume(state_dir or Path(cfg.stateDir), instance):
        click.echo(f"Instance {instance} resumed: the daemon applies changes again.")
    else:
        click.echo(f"Instance {instance} was not suspended.")
    return EXIT_OK


@click.command(name="snapshot")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write it to this file (gzip when it ends in .gz); default: standard output.")
@common
def snapshot_command(*, cfg: configuration.Config, connect: str,
                     out: Path | None) -> int:
    """Record everything a plan reads from the host (read-only), for plans in CI."""
    import json

    from reconciler.adapters import snapshot as snapshots
    from reconciler.adapters.libvirt.snapshot import take

    hv = connect_libvirt(connect, readonly=True)
    try:
        snap = take(hv, cfg.storageRoots)
    finally:
        hv.close()
    if out is None:
        click.echo(json.dumps(snapshots.to_json(snap), indent=1))
    else:
        snapshots.write(snap, out)
        click.echo(f"Snapshot of {snap.hostname or snap.uri} ({len(snap.domains)} domains, "
                   f"{len(snap.networks)} networks, {len(snap.pools)} pools) written to {out}.",
                   err=True)
    return EXIT_OK


COMMANDS = (approve, suspend, resume, snapshot_command)
