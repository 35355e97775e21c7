"""apply's question before it changes anything, as Terraform asks it."""

from __future__ import annotations

import sys

import click

from reconciler.core import render
from reconciler.core.plan import Plan


def asked(plan: Plan) -> bool:
    """Whether the person at the terminal approves ``plan``: ``[y/N]``, or ``yes`` typed out
    when it destroys anything or deletes a volume (one keystroke is too easy to wave through
    for what cannot be undone). Not a terminal: refused, naming ``--yes``."""
    if not sys.stdin.isatty():
        click.echo("reconciler: not a terminal; pass --yes to apply without confirmation",
                   err=True)
        return False
    gone = render.irreversible(plan)
    if not gone:
        return click.confirm("Apply this plan?", default=False)
    click.echo(f"\nThis plan {gone}: that cannot be undone.\n"
               "Only 'yes' will be accepted to approve.\n")
    answer: str = click.prompt("Enter a value", default="", show_default=False)
    return answer.strip() == "yes"
