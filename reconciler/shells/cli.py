"""The command line: parse, call the pipeline, render. No business logic here."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler import __version__
from reconciler.shells.options import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    PRUNE,
    common,
    connect_libvirt,
    destinations_of,
    duration,
    finished,
    formats,
    manifest_path,
    path_arg,
    peers_of,
    routes_of,
    snapshot_host,
    source_of,
    target_options,
)

if TYPE_CHECKING:
    from reconciler import pipeline
    from reconciler.adapters import config as configuration
    from reconciler.core.plan import Header
    from reconciler.core.result import Result
    from reconciler.core.validate.result import Validated

# Each command imports what it uses when it runs (the pipeline, the executor, status, export,
# the daemon, and structlog, lxml, watchdog, prometheus_client, pycdlib behind them):
# `--version` and `--help` import click and little else (tests/core/test_startup.py).

def _valid_summary(inputs: Validated) -> str:
    """"3 VMs, 1 network valid": every kind that is present (VMs always)."""
    counts = [(len(inputs.vms), "VM"), (len(inputs.networks), "network"),
              (len(inputs.pools), "storage pool")]
    parts = [f"{n} {word}{'' if n == 1 else 's'}" for i, (n, word) in enumerate(counts)
             if n or i == 0]
    return ", ".join(parts)


# The commands defined in other modules, imported when they run (or for --help, the man pages):
# name -> (module, attribute). tests/core/test_startup.py checks it against their COMMANDS.
ELSEWHERE = {
    "run": ("reconciler.shells.commands", "run"),
    "status": ("reconciler.shells.commands", "status_command"),
    "export": ("reconciler.shells.commands", "export_command"),
    "schema": ("reconciler.shells.commands", "schema"),
    "approve": ("reconciler.shells.gitops_cli", "approve"),
    "suspend": ("reconciler.shells.gitops_cli", "suspend"),
    "resume": ("reconciler.shells.gitops_cli", "resume"),
    "snapshot": ("reconciler.shells.gitops_cli", "snapshot_command"),
}


def _whole_short_help(command: click.Command) -> click.Command:
    """`reconciler --help` (and the man page's list) show each command's first sentence whole,
    wrapped, never cut at 45 characters with "..." as click does by default."""
    command.short_help = command.short_help or command.get_short_help_str(limit=1000)
    return command


class _Commands(MutableMapping[str, click.Command]):
    """The group's commands: those added (defined here), and those of ``ELSEWHERE``, each
    imported at its first use: `--version` and a command defined here do not import the
    others' modules (3-4 ms)."""

    def __init__(self, elsewhere: dict[str, tuple[str, str]]) -> None:
        self._loaded: dict[str, click.Command] = {}
        self._elsewhere = dict(elsewhere)

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module, attribute = self._elsewhere[name]  # KeyError: no such command
            command = getattr(importlib.import_module(module), attribute)
            self._loaded[name] = _whole_short_help(command)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._elsewhere.pop(name, None)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._loaded.pop(name, None)
        self._elsewhere.pop(name, None)

    def __contains__(self, name: object) -> bool:  # without importing it
        return name in self._loaded or name in self._elsewhere

    def __iter__(self) -> Iterator[str]:
        return iter([*self._loaded, *(n for n in self._elsewhere if n not in self._loaded)])

    def __len__(self) -> int:
        return len(self._loaded.keys() | self._elsewhere.keys())


class _Main(click.Group):
    """The command group. Run as the process's own command (the console script, ``python -m``:
    no ``args``), a read-only command or apply (``options.EXITS_AT_ONCE``) ends the process with
    ``os._exit`` once its output is flushed: nothing is left to clean up, and tearing down the
    interpreter's objects would cost tens of ms at 1,000 VMs (10-15 ms even at 10). Called with
    arguments (tests, other Python code) it returns or raises ``SystemExit`` as usual, as it does
    under a profiler or tracer (cProfile, coverage), which write their data at exit.
    Its commands are a ``_Commands``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(ELSEWHERE)

    def main(self, args: Sequence[str] | None = None, *rest: Any, **extra: Any) -> Any:
        finished.clear()
        try:
            return super().main(args, *rest, **extra)
        except SystemExit as exc:
            if (args is None and finished and isinstance(exc.code, int)
                    and sys.getprofile() is None and sys.gettrace() is None):  # no profiler
                with contextlib.suppress(OSError, ValueError):  # else: exit the usual way
                    sys.stdout.flush()
                    sys.stderr.flush()
                    # measured 2026-11-30: 22 ms, 9% of a cached 1,000-VM plan (bench/README.md)
                    os._exit(exc.code)
            raise


@click.group(cls=_Main,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reconciler")
def main() -> None:
    """Declarative, GitOps-style reconciler for libvirt virtual machines."""


@main.command()
@path_arg
@formats("text", "json", "github")
def validate(*, path: Path | None, cfg: configuration.Config, fmt: str) -> int:
    """Check manifests against the schemas and each other. Needs no libvirt.
    ``--format github``: GitHub Actions annotations, shown inline in a pull request."""
    from reconciler.adapters import manifests
    from reconciler.core import render

    inputs = manifests.load_desired(manifest_path(path, cfg), cfg.storageRoots)
    if fmt == "github":
        click.echo(render.github_annotations(inputs.problems), nl=False)
        if inputs.ok:
            click.echo(f"{_valid_summary(inputs)} valid.")
    elif fmt == "json":
        click.echo(render.dumps({"valid": inputs.ok, "vms": len(inputs.vms),
                                 "networks": len(inputs.networks), "pools": len(inputs.pools),
                                 "problems": [p.as_dict() for p in inputs.problems]}), nl=False)
    else:
        click.echo(render.problems_text(inputs.problems), nl=False)
        if inputs.ok:
            click.echo(f"{_valid_summary(inputs)} valid.")
    return EXIT_OK if inputs.ok else EXIT_ERROR


@main.command()
@path_arg
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@click.option("--out", type=click.Path(path_type=Path), help="Save the plan (JSON) for apply.")
@click.option("--max-destroy", type=int, default=None, help="Most VMs one run may destroy.")
@click.option("--allow-empty", is_flag=True, help="Let an empty manifest set remove every VM.")
@click.option("--fleet", is_flag=True,
              help="Plan every Host of the repository at once (over each Host's URI, or "
                   "from --snapshots), grouped by host.")
@click.option("--snapshots", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="With --fleet: read each host from DIR/NAME.snapshot instead of its URI.")
@click.option("--snapshot", type=click.Path(path_type=Path), default=None,
              help="Plan against a snapshot file (reconciler snapshot), with no libvirt.")
@PRUNE
@target_options
@formats("text", "json", "markdown")
def plan(*, path: Path | None, cfg: configuration.Config, fmt: str, connect: str, instance: str,
         detailed_exitcode: bool, out: Path | None, max_destroy: int | None,
         allow_empty: bool, snapshot: Path | None, prune: str | None,
         targets: tuple[str, ...], selectors: tuple[str, ...], fleet: bool,
         snapshots: Path | None) -> int:
    """Show what apply would do, over a read-only connection (or against a snapshot; or,
    with --fleet, for every host of the repository). With --target / -l, only for those VMs
    (and their networks and pools)."""
    from reconciler import pipeline
    from reconciler.adapters import cache, git
    from reconciler.adapters.cache import Cache
    from reconciler.core import render
    from reconciler.core.plan import Header

    folder = manifest_path(path, cfg)
    if fleet or snapshots is not None:
        if not fleet or snapshot is not None or out is not None or targets or selectors:
            raise click.UsageError("--snapshots goes with --fleet; --fleet takes none of "
                                   "--snapshot, --out, --target, -l")
        from reconciler.shells import fleet as fleets

        opener = (fleets.snapshot_opener(snapshots) if snapshots is not None
                  else fleets.libvirt_opener)
        whole, header = fleets.plan_fleet(
            source_of(folder, cfg, instance, max_destroy, allow_empty, prune), opener,
            memo=Cache(cache.default_dir()))
        return fleets.show(whole, header, fmt, detailed_exitcode=detailed_exitcode)
    hv = (snapshot_host(snapshot) if snapshot is not None
          else connect_libvirt(connect, readonly=True))
    try:
        planned = pipeline.make_plan(
            source_of(folder, cfg, instance, max_destroy, allow_empty, prune,
                      targets=targets, selectors=selectors), hv,
            memo=Cache(cache.default_dir()), peers=None if snapshot else peers_of(instance),
            destinations=None if snapshot else destinations_of(hv))  # type: ignore[arg-type]
        revision = git.revision(folder)
        header = Header(instance=instance, host=cfg.host or hv.hostname(), uri=hv.uri,
                        commit=revision.commit, snapshot=hv.taken, dirty=revision.dirty,
                        git_problem=revision.problem)
    finally:
        hv.close()
    doc = render.plan_json(planned.plan, planned.inputs.problems, header=header)
    if out:
        out.write_text(render.dumps(doc))
    _show_plan(planned, fmt, doc, header)
    # Exit 1 for what apply would fail on whatever the live state does: invalid manifests,
    # refused changes, conflicts. Destroys held back by a guard are shown and exit 0/2.
    if planned.inputs.problems or any(a.stuck for a in planned.plan.actions):
        return EXIT_ERROR
    pending = planned.plan.has_changes or any(a.elsewhere for a in planned.plan.actions)
    return EXIT_CHANGES if detailed_exitcode and pending else EXIT_OK


def _show_plan(planned: pipeline.Planned, fmt: str, doc: dict[str, object],
               header: Header | None = None) -> None:
    from reconciler.core import render

    if fmt == "json":
        click.echo(render.dumps(doc), nl=False)
        return
    if fmt == "markdown":
        from reconciler.core.markdown import plan_markdown

        click.echo(plan_markdown(planned.plan, planned.inputs.problems, header), nl=False)
        return
    from reconciler.shells import console

    click.echo(render.problems_text(planned.inputs.problems), nl=False, err=True)
    if planned.inputs.problems and not planned.plan.actions:
        return  # the error only: "No changes" would say the manifests were read and match
    console.echo_lines(render.plan_lines(planned.plan, header))


@main.command()
@path_arg
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--plan", "plan_file", type=click.Path(exists=True, path_type=Path),
              help="Apply a plan saved with `plan --out` (reviewed: not asked again); refused "
                   "if the live state changed.")
@click.option("--max-destroy", type=int, default=None, help="Most VMs one run may destroy.")
@click.option("--allow-empty", is_flag=True, help="Let an empty manifest set remove every VM.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Where the status file goes (default /var/lib/reconciler).")
@click.option("--parallel", type=click.IntRange(1, 64), default=None,
              help="VMs changed at once (default 4).")
@click.option("--lock-timeout", callback=duration, metavar="DURATION", default="0s",
              show_default=True,
              help="How long to wait for another writer of the instance (30s, 5m).")
@PRUNE
@target_options
@common
def apply(*, path: Path | None, cfg: configuration.Config, fmt: str, connect: str,
          instance: str, yes: bool,
          plan_file: Path | None, max_destroy: int | None, allow_empty: bool,
          state_dir: Path | None, parallel: int | None, lock_timeout: int,
          prune: str | None, targets: tuple[str, ...], selectors: tuple[str, ...]) -> int:
    """Plan, then carry the plan out. On a terminal it asks first ([y/N]; `yes` typed out when
    the plan destroys anything or deletes a volume), unless --yes or --plan FILE. With
    --target / -l, only for those VMs; a saved plan keeps the target it was made with."""
    from reconciler import pipeline
    from reconciler.adapters import cache, lock
    from reconciler.adapters import git as gitinfo
    from reconciler.adapters.cache import Cache
    from reconciler.core import render
    from reconciler.shells import confirm, saved_plan, status
    from reconciler.shells.interrupts import Interrupts, Stopped

    if plan_file is not None:  # its own target (--target or -l besides: a usage error)
        targets, selectors = saved_plan.target_options(plan_file, targets, selectors)
    folder = manifest_path(path, cfg)
    states = state_dir or Path(cfg.stateDir)
    with Interrupts() as interrupts:
        try:
            with lock.exclusive(instance, command="apply", state_dir=states,
                                timeout=lock_timeout):
                hv = connect_libvirt(connect)
                asked = gitinfo.Asked(folder)  # git runs while the host is read
                try:
                    source = source_of(folder, cfg, instance, max_destroy, allow_empty, prune,
                                       states, targets=targets, selectors=selectors)
                    memo = Cache(cache.default_dir())
                    planned = pipeline.make_plan(source, hv, memo=memo,
                                                 peers=peers_of(instance),
                                                 destinations=destinations_of(hv))
                    if planned.hosts or planned.forget:  # many hosts (adapters.knownhosts)
                        from reconciler.adapters import knownhosts

                        knownhosts.remember(states, instance, planned.hosts, planned.forget)
                    doc = render.plan_json(planned.plan, planned.inputs.problems,
                                           instance=instance)
                    if plan_file and not saved_plan.applicable(plan_file, doc):
                        return EXIT_ERROR
                    _show_plan(planned, fmt, doc)
                    # A saved plan was reviewed when it was made: not asked again.
                    if (planned.plan.has_changes and not yes and plan_file is None
                            and not confirm.asked(planned.plan)):
                        click.echo("Apply cancelled.", err=True)
                        return EXIT_ERROR
                    revision = asked.revision()
                    if revision.problem:  # said once, never left out silently
                        click.echo(f"warning: {revision.problem}", err=True)
                    interrupts.changing = True  # from here on a signal stops between steps
                    # Without changes this writes nothing: each action's result (blocked,
                    # pending restart, suspended) still goes to the status file. A plan with
                    # no action has no result: the executor is not even imported.
                    results: tuple[Result, ...] = ()
                    if planned.plan.actions:
                        from reconciler.apply.executor import Settings, execute
                        from reconciler.shells import progress

                        with progress.shown(enabled=planned.plan.has_changes) as observer:
                            settings = Settings(parallel=parallel or cfg.parallel,
                                                commit=revision.commit, dirty=revision.dirty,
                                                instance=instance, halt=interrupts.received,
                                                observer=observer,
                                                routes=routes_of(planned.inputs))
                            results = execute(planned.plan, hv, settings)
                    # Each result as a fresh read of the host shows it: "converged" only
                    # when a new plan has nothing left to do for that resource.
                    _, results = pipeline.verify(source, hv, planned, results, memo=memo)
                finally:
                    asked.close()
                    hv.close()
                status.record(states, instance, planned, results, revision)
                from reconciler.shells.outcome import forget_approvals

                forget_approvals(states, instance, planned, results)
        except Stopped as stopped:
            click.echo(f"reconciler: interrupted by {stopped} before any change: nothing was "
                       "changed", err=True)
            return EXIT_ERROR
        from reconciler.shells.outcome import report

        return report(planned, results, fmt, interrupts)


for _command in (main, validate, plan, apply):  # the others' when they are imported
    _whole_short_help(_command)


if __name__ == "__main__":  # pragma: no cover  (after the commands are added)
    main(prog_name=os.path.basename(sys.argv[0]))
