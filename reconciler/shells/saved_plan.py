"""`apply --plan FILE`: a plan saved with `plan --out` is applied only as it was reviewed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconciler.core import scope


def applicable(saved: Path, doc: dict[str, object]) -> bool:
    """Whether the plan saved in ``saved`` may be carried out, given ``doc``, the plan made now
    from a fresh read (``render.plan_json``): made for this instance, what it read about its
    own objects is as it was (see ``core.scope``), and the plan made now does the same.
    Otherwise says on stderr what moved, and returns False."""
    try:
        old = json.loads(saved.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        click.echo(f"reconciler: {saved}: not a saved plan: {exc}", err=True)
        return False
    why = scope.refusals(old if isinstance(old, dict) else {}, doc)
    if why:
        click.echo(f"reconciler: {saved}: refused: the live state or the manifests changed "
                   f"since this plan was made: {'; '.join(why)}. Run `reconciler plan` again "
                   "and review it", err=True)
        return False
    return True


def target_options(saved: Path, targets: tuple[str, ...] = (), selectors: tuple[str, ...] = (),
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``--target`` and ``-l`` values a saved plan was made with, for the fresh plan that
    ``apply --plan`` compares with it: the same partial run. A file that is not a saved plan,
    or whose target is not one, gives none (the comparison then refuses it). ``targets``,
    ``selectors``: those given on the command line; any raises ``click.UsageError``."""
    if targets or selectors:
        raise click.UsageError("--target and -l cannot be given with --plan: a saved plan "
                               "is applied with the target it was made with")
    try:
        doc = json.loads(saved.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return (), ()
    found = doc.get("target") if isinstance(doc, dict) else None
    if not isinstance(found, dict):
        return (), ()
    listed, selector = found.get("targets"), found.get("selector")
    options = (tuple(str(t) for t in listed) if isinstance(listed, list) else (),
               (selector,) if isinstance(selector, str) and selector else ())
    from reconciler.core.targeting import Targeting

    try:
        Targeting.of(*options)
    except ValueError:
        return (), ()
    return options
