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
