"""The commands around the engine: `run` (the daemon), `status`, `export` and `schema`.
Registered on the command group by ``cli``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.core import defaults
from reconciler.shells.options import (
    EXIT_ERROR,
    EXIT_OK,
    PRUNE,
    common,
    connect_libvirt,
    duration,
    manifest_path,
    max_destroy_of,
    path_arg,
    seconds,
    source_of,
)

if TYPE_CHECKING:
    from reconciler import pipeline
    from reconciler.adapters import config as configuration


@click.command()
@path_arg
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State directory (default /var/lib/reconciler).")
@click.option("--interval", callback=seconds, metavar="DURATION",
              default=f"{defaults.RESYNC_INTERVAL:g}s", show_default=True,
              help="Time between periodic resyncs (30s, 5m; or seconds).")
@click.option("--debounce", callback=seconds, metavar="DURATION",
              default=f"{defaults.DEBOUNCE:g}s", show_default=True,
              help="Quiet after a file change before reconciling (1s; or seconds).")
@click.option("--metrics-addr", default=defaults.METRICS_ADDR, show_default=True,
              help="host:port for Prometheus metrics, or `off`.")
@click.option("--max-destroy", type=int, default=None, help="Most VMs one cycle may destroy.")
@click.option("--allow-empty", is_flag=True, help="Let an empty manifest set remove every VM.")
@click.option("--parallel", type=click.IntRange(1, 64), default=None,
              help="VMs changed at once (default 4).")
@click.option("--snapshot-file", type=click.Path(path_type=Path), default=None,
              help="Keep a snapshot of the host there for plans in CI (refreshed after "
                   "changes, at most every minute otherwise).")
@PRUNE
@click.option("--git", "git_url", envvar="RECONCILER_GIT_URL", default=None, metavar="URL",
              help="Pull mode: follow this repository's branch (kept in the state directory) "
                   "instead of PATH.")
@click.option("--branch", default="main", show_default=True, help="Pull mode: the branch.")
@click.option("--git-path", default=".", show_default=True, metavar="DIR",
              help="Pull mode: the manifest folder inside the repository.")
@click.option("--git-interval", callback=duration, default="30s", show_default=True,
              help="Pull mode: how often to fetch (30s, 5m); SIGHUP fetches at once.")
@click.option("--git-ssh-key", envvar="RECONCILER_GIT_SSH_KEY", default=None, metavar="FILE",
              type=click.Path(path_type=Path), help="Pull mode: the SSH key for an SSH URL.")
@common
def run(*, path: Path | None, cfg: configuration.Config, connect: str, instance: str,
        state_dir: Path | None, interval: float, debounce: float, metrics_addr: str,
        max_destroy: int | None, allow_empty: bool, parallel: int | None,
        snapshot_file: Path | None, prune: str | None, git_url: str | None,
        branch: str, git_path: str, git_interval: int, git_ssh_key: Path | None,
        config_file: Path | None = None) -> int:
    """The daemon: watch PATH (or, with --git, a repository's branch) and libvirt, reconcile
    until SIGTERM."""
    from reconciler.shells import pull
    from reconciler.shells.daemon import Daemon, Options

    states = state_dir or Path(cfg.stateDir)
    remote = pull.Remote(git_url, branch, git_path, git_interval, git_ssh_key) if git_url else None
    options = Options(
        path=manifest_path(pull.manifest_path(path, remote, states, instance), cfg),
        connect=connect, git=remote,
        state_dir=states, interval=interval, debounce=debounce,
        metrics_addr=None if metrics_addr == "off" else metrics_addr,
        max_destroy=max_destroy_of(max_destroy, cfg), allow_empty=allow_empty,
        parallel=parallel or cfg.parallel, config_file=config_file, instance=instance,
        storage_roots=tuple(cfg.storageRoots), prune=prune or cfg.prune, notify=cfg.notify,
        snapshot_file=snapshot_file, host=cfg.host, max_moves=cfg.maxMoves)
    return Daemon(options).run()


@click.command(name="status")
@click.argument("name", required=False)
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State directory (default /var/lib/reconciler).")
@click.option("--wait", is_flag=True,
              help="Wait until every VM is in sync with the manifests and healthy.")
@click.option("--timeout", callback=duration, metavar="DURATION", default="5m",
              show_default=True,
              help="How long --wait waits (30s, 5m, ...).")
@click.option("--manifests", type=click.Path(path_type=Path), default=None,
              help="The manifests --wait and --fleet compare with (default: the config's "
                   "manifestDir).")
@click.option("--fleet", is_flag=True,
              help="Every Host's VMs in one table (host, VM, sync, health, commit), read "
                   "over each Host's URI or from --snapshots.")
@click.option("--snapshots", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="With --fleet: read each host from DIR/NAME.snapshot.")
@common
def status_command(*, cfg: configuration.Config, fmt: str, connect: str, instance: str,
                   state_dir: Path | None, wait: bool, timeout: int,
                   manifests: Path | None, name: str | None, fleet: bool,
                   snapshots: Path | None) -> int:
    """Each object the instance manages: in sync, pending, pending restart, failed, blocked,
    conflict or suspended. Exit 0 all in sync, 1 anything failed, blocked or in conflict, 2
    work pending. With --wait: exit 0 once every VM is in sync and healthy (running as asked,
    its guest agent connected when guestAgent is set), 1 at the timeout, saying what is not."""
    from reconciler.shells import status

    if fleet or snapshots is not None:
        if not fleet or wait or name is not None:
            raise click.UsageError("--snapshots goes with --fleet; --fleet takes neither "
                                   "--wait nor NAME")
        return _fleet_status(source_of(manifest_path(manifests, cfg), cfg, instance, None,
                                       False), snapshots, fmt)
    if wait:
        source = source_of(manifest_path(manifests, cfg), cfg, instance, None, False)
        return status.wait(source, lambda: connect_libvirt(connect, readonly=True),
                           timeout=timeout, fmt=fmt)
    if name is not None:
        return status.show_one(state_dir=state_dir or Path(cfg.stateDir), instance=instance,
                               name=name, fmt=fmt)
    return status.show(state_dir=state_dir or Path(cfg.stateDir), instance=instance, fmt=fmt)


def _fleet_status(source: pipeline.Source, snapshots: Path | None, fmt: str) -> int:
    """``status --fleet``: each host planned read-only, one row per VM; exit as ``status``."""
    from reconciler.core import fleetstatus, render
    from reconciler.shells import fleet as fleets

    opener = (fleets.snapshot_opener(snapshots) if snapshots is not None
              else fleets.libvirt_opener)
    whole, header = fleets.plan_fleet(source, opener)
    found = fleetstatus.rows(whole)
    if fmt == "json":
        click.echo(render.dumps({"header": render.header_json(header), "vms": [
            {"host": r.host, "name": r.vm, "sync": r.sync, "health": r.health,
             "commit": None if r.commit == "-" else r.commit} for r in found],
            "problems": [p.as_dict() for p in whole.problems]}), nl=False)
    else:
        click.echo(render.problems_text(whole.problems), nl=False, err=True)
        problems = (f"{len(whole.problems)} manifest problem(s): VMs whose manifests have "
                    "problems are not listed\n" if whole.problems else "")
        click.echo(fleetstatus.table(found) + problems + render.header_text(header) + "\n",
                   nl=False)
    return fleetstatus.exit_code(found, len(whole.problems))


@click.command(name="export")
@click.argument("name")
@common
def export_command(*, name: str, cfg: configuration.Config, fmt: str, connect: str,
                   instance: str) -> int:
    """Print a manifest for an existing domain (to adopt a VM made by hand)."""
    from reconciler.core import export, render
    from reconciler.core.errors import NotFoundError

    hv = connect_libvirt(connect, readonly=True)
    try:
        found = hv.read_definition(name)
    except NotFoundError:
        click.echo(f"reconciler: no domain named {name!r} on {connect}", err=True)
        return EXIT_ERROR
    finally:
        hv.close()
    exported = export.export_manifest(found.xml, running=found.running,
                                      autostart=found.autostart, volumes=found.volumes,
                                      instance=instance)
    if fmt == "json":
        click.echo(render.dumps({"manifest": exported.manifest, "notes": list(exported.notes)}),
                   nl=False)
    else:
        click.echo(export.to_yaml(exported), nl=False)
    return EXIT_OK


@click.command()
@click.argument("kind", required=False)
def schema(kind: str | None) -> None:
    """Print the JSON schema of a manifest kind (any case: `network`), of every kind at once
    (the default; also `all`), or of the plan (`plan`)."""
    from reconciler.core import schema as schemas

    try:
        document = schemas.load(schemas.lookup(kind or schemas.MANIFEST))
    except KeyError:
        known = ", ".join([*schemas.KINDS, f"{schemas.MANIFEST} (all kinds; also: all)", "plan"])
        click.echo(f"reconciler: unknown schema {kind!r}; known: {known}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(schemas.dumps(document))


COMMANDS = (run, status_command, export_command, schema)
