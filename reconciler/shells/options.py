"""What every command shares: the common options and their handling (one line to stderr, exit
1), option types (durations, --prune), the manifest path, the libvirt connection or snapshot
a command reads, and the plan's source. No command here (``cli``, ``gitops_cli``)."""

from __future__ import annotations

import functools
import gc
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from reconciler import pipeline
    from reconciler.adapters import config as configuration
    from reconciler.adapters.libvirt import Libvirt
    from reconciler.apply.move import Route
    from reconciler.core.model.host import Destination
    from reconciler.core.model.vm import LiveVM
    from reconciler.core.validate.result import Validated

# What a command needs is imported when it runs (here, in the commands, in the pipeline):
# `reconciler --version` and `--help` import click and little else, `validate` no libvirt,
# lxml, structlog or rich (tests/core/test_startup.py; bench/startup_bench.py).

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
LOGGING_COMMANDS = ("apply", "run")  # the commands whose code logs (structlog)
# The commands whose output may be coloured on a terminal (--no-color, NO_COLOR).
COLOURED_COMMANDS = ("plan", "apply", "validate", "status_command", "run")
# One-shot commands that change nothing: no cyclic garbage collector while they run (reference
# counting frees what they drop; the collector's passes over ~1M objects cost tens of ms at
# 1,000 VMs), and the process ends without tearing the interpreter down (see _Main).
READ_ONLY_COMMANDS = ("plan", "validate", "status_command", "export_command",
                       "snapshot_command")
# ... and apply, once it has run to its exit code: its lock is released, its connection closed,
# its files written (fsync, rename) and its workers joined by then. Tearing the interpreter down
# cost 15 ms, a tenth of an apply with nothing to do (bench/startup_bench.py).
EXITS_AT_ONCE = (*READ_ONLY_COMMANDS, "apply")
finished: list[bool] = []  # set when such a command has run to its exit code


def formats(*formats: str) -> Callable[[Callable[..., int]], Callable[..., None]]:
    """``_common`` with these values of ``--format`` (text first: the default)."""
    return functools.partial(common, formats=formats)


def common(func: Callable[..., int], *,
            formats: Sequence[str] = ("text", "json")) -> Callable[..., None]:
    """Options every command takes, and error handling: one line to stderr, exit 1.
    ``formats``: the values of the command's ``--format`` (text first: the default)."""

    # Only the options that mean something to this command: --connect where it reads libvirt,
    # --instance where it names the instance, --format where it has formats, the log options
    # where it logs; --config everywhere.
    takes = inspect.signature(func).parameters
    logs_anything = func.__name__ in LOGGING_COMMANDS
    coloured = func.__name__ in COLOURED_COMMANDS

    @functools.wraps(func)
    def wrapper(*, config_file: Path | None, log_format: str = "auto", verbose: bool = False,
                no_color: bool = False, **kwargs: Any) -> None:
        from reconciler.adapters import config as configuration
        from reconciler.adapters import lazylog
        from reconciler.core.errors import PermanentError, ReconcilerError

        daemon = func.__name__ == "run"  # the daemon logs every action; one-shot commands print
        if coloured:  # before any output, logs included
            from reconciler.shells import console

            console.configure(no_color=no_color)

        def setup_logging() -> None:
            import logging

            from reconciler.shells import logs

            logs.configure(log_format, logging.INFO if verbose or daemon else logging.WARNING)

        if daemon:
            setup_logging()
        elif logs_anything:  # apply: structlog is imported and set up when it first logs
            lazylog.configure_on_first_log(setup_logging)
        if "config_file" in takes:
            kwargs["config_file"] = config_file
        read_only = func.__name__ in READ_ONLY_COMMANDS
        collecting = gc.isenabled()
        if read_only:
            # measured 2026-11-30: 18 ms, 8% of a cached 1,000-VM plan (bench/README.md)
            gc.disable()
        try:
            cfg = configuration.load(config_file)
            if "connect" in takes:
                kwargs["connect"] = kwargs["connect"] or cfg.connect
            if "instance" in takes:
                from reconciler.core import instance as instance_name

                instance = kwargs["instance"]
                instance = cfg.instance if instance is None else instance
                if problem := instance_name.problem(instance):  # it names files: refuse ../x
                    raise PermanentError(problem)
                kwargs["instance"] = instance
            code = func(cfg=cfg, **kwargs)
        except ReconcilerError as exc:
            from reconciler.shells import logs

            click.echo(logs.error_line(f"reconciler: {exc}"), err=True)
            code = EXIT_ERROR
        finally:
            lazylog.forget_pending()
            if collecting:
                gc.enable()
        if func.__name__ in EXITS_AT_ONCE:
            finished.append(True)
        sys.exit(code)

    options: list[Callable[[Any], Any]] = []
    if "connect" in takes:
        options.append(click.option(
            "--connect", "connect", envvar="RECONCILER_CONNECT", default=None,
            help="libvirt URI (default qemu:///system, or the config's)."))
    if "instance" in takes:
        options.append(click.option(
            "--instance", envvar="RECONCILER_INSTANCE", default=None,
            help="This reconciler's name on a shared host (default `default`)."))
    options.append(click.option(
        "--config", "config_file", type=click.Path(path_type=Path), default=None,
        help="Config file (default /etc/reconciler/config.yaml, optional)."))
    if "fmt" in takes:
        options.append(click.option("--format", "fmt", type=click.Choice(list(formats)),
                                    default="text", help="Output format."))
    if coloured:
        options.append(click.option(
            "--no-color", is_flag=True,
            help="No colour on a terminal (as NO_COLOR=1 does); never any off one."))
    if logs_anything:
        options.append(click.option("--log-format", type=click.Choice(["auto", "console", "json"]),
                                    default="auto", help="Log format on stderr."))
        options.append(click.option("-v", "--verbose", is_flag=True,
                                    help="Log every action as it happens."))
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def duration(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """A duration as manifests spell it (``30s``, ``5m``), in seconds."""
    from reconciler.core import units

    try:
        return units.parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def seconds(ctx: click.Context, param: click.Parameter, value: object) -> float:
    """A duration as manifests spell it (``30s``, ``5m``), or a plain number of seconds
    (``0.5``, as these options took before), in seconds."""
    import math

    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return float(duration(ctx, param, text))
    if not math.isfinite(number) or number < 0:
        raise click.BadParameter(f"{text!r} is not a duration; write e.g. 30s, 5m or 1h")
    return number


PRUNE: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--prune", type=click.Choice(["auto", "confirm", "off"]), default=None,
    help="A VM whose manifest is gone: auto destroys it, confirm waits for `reconciler "
         "approve NAME`, off never (default: the config's prune, else auto).")


def _patterns(_ctx: click.Context, param: click.Parameter,
              values: tuple[str, ...]) -> tuple[str, ...]:
    """``--target`` / ``-l`` values, each checked (``core.targeting``, imported here)."""
    if not values:
        return values
    from reconciler.core import targeting

    check = targeting.parse_pattern if param.name == "targets" else targeting.parse_selector
    for value in values:
        try:
            check(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    return values


def target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--target PATTERN`` and ``-l/--selector SELECTOR``, both repeatable: a run limited to
    some VMs (``core.targeting``)."""
    func = click.option(
        "-l", "--selector", "selectors", multiple=True, callback=_patterns,
        metavar="KEY=VALUE[,...]",
        help="Only the VMs whose manifest labels match (KEY=VALUE, KEY!=VALUE, KEY, !KEY; "
             "all must match; with --target: both).")(func)
    return click.option(
        "--target", "targets", multiple=True, callback=_patterns, metavar="PATTERN",
        help="Only the VMs whose name matches this glob (web-*), or network/NAME, pool/NAME; "
             "repeatable (any matches). A targeted VM's networks and pools come with it.")(func)


def path_arg(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("path", required=False, type=click.Path(path_type=Path))(func)


def manifest_path(path: Path | None, cfg: configuration.Config) -> Path:
    return path if path is not None else Path(cfg.manifestDir)


def connect_libvirt(uri: str, *, readonly: bool = False) -> Libvirt:
    """Open libvirt (imported here: ``plan --snapshot`` and ``validate`` run where
    libvirt-python is not installed, as on a CI runner)."""
    from reconciler.core.errors import PermanentError

    try:
        from reconciler.adapters.libvirt import Libvirt
    except ImportError as exc:
        raise PermanentError(
            f"libvirt-python is not installed ({exc}); install reconciler with the libvirt "
            "extra on a hypervisor host (pip install 'reconciler[libvirt]'), or plan against "
            "a snapshot: reconciler plan --snapshot FILE") from exc
    return Libvirt(uri, readonly=readonly)


def peers_of(instance: str) -> pipeline.Peers:
    """How a host looks for a VM it would create on the fleet's other hosts (many hosts)."""

    def managed_there(uri: str, names: Sequence[str] | None,
                      ) -> tuple[str | None, frozenset[str]]:
        from reconciler.adapters.libvirt.peers import managed_here

        return managed_here(uri, names, instance)

    return managed_there


def destinations_of(hv: Libvirt) -> pipeline.Destinations:
    """How a host reads the host a VM leaving it moves to (many hosts): over the Host's URI,
    with each running VM's CPU (read here) checked there."""

    def read(host: str, uri: str, vms: tuple[LiveVM, ...], left: tuple[str, ...] = (),
             ) -> Destination:
        from reconciler.adapters.libvirt.peers import destination
        from reconciler.core.errors import ReconcilerError

        cpus: dict[str, str] = {}
        for vm in vms:
            if vm.running:
                try:
                    xml = hv.live_cpu(vm.name)
                except ReconcilerError:
                    continue
                if xml:
                    cpus[vm.name] = xml
        return destination(host, uri, vms, cpus, left)

    return read


def routes_of(inputs: Validated) -> dict[str, Route]:
    """How apply reaches each Host a VM may move to."""
    from reconciler.apply.move import Route

    return {h.spec.name: Route(h.spec.uri, h.spec.migrate_uri) for h in inputs.hosts}


def max_destroy_of(option: int | None, cfg: configuration.Config) -> int:
    return cfg.maxDestroy if option is None else option


def source_of(path: Path, cfg: configuration.Config, instance: str, max_destroy: int | None,
            allow_empty: bool, prune: str | None = None,
            state_dir: Path | None = None, *, targets: Sequence[str] = (),
            selectors: Sequence[str] = ()) -> pipeline.Source:
    """The plan's source; ``targets``, ``selectors``: ``--target``, ``-l`` (checked)."""
    from reconciler import pipeline

    target = None
    if targets or selectors:  # (the targeting module is loaded only then)
        from reconciler.core.targeting import Targeting

        target = Targeting.of(targets, selectors)
    return pipeline.Source(path, instance, tuple(cfg.storageRoots),
                           max_destroy_of(max_destroy, cfg), allow_empty, prune or cfg.prune,
                           state_dir or Path(cfg.stateDir), max_moves=cfg.maxMoves,
                           target=target, host=cfg.host)


def snapshot_host(path: Path) -> pipeline.Host:
    from reconciler.adapters import snapshot as snapshots

    return snapshots.SnapshotHost(snapshots.read(path), path)
