"""What a person at a terminal sees: whether output is coloured, and plans and results coloured
by what each line is (``render.Tone``), with click's styling.

Colour is on only when the stream is a terminal, ``--no-color`` was not given and ``NO_COLOR``
is unset or empty (https://no-color.org). Off a terminal nothing here writes an escape code.
Results go to stdout; progress and logs go to stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

import click

if TYPE_CHECKING:
    from reconciler.core.render import Line

NO_COLOR_ENV = "NO_COLOR"
_refused: list[bool] = []  # --no-color given to the command running now


def configure(*, no_color: bool) -> None:
    """The command's ``--no-color`` (set once per command, before it prints)."""
    _refused.clear()
    if no_color:
        _refused.append(True)


def colour(stream: TextIO) -> bool:
    """Whether to colour what goes to ``stream``."""
    if _refused or os.environ.get(NO_COLOR_ENV, ""):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


# Terraform's colours: create green, update yellow, destroy red; what will not be done
# magenta; how a change takes effect (live, restart) stands out inside its line.
_TONES: dict[str, dict[str, Any]] = {
    "create": {"fg": "green"}, "update": {"fg": "yellow"}, "destroy": {"fg": "red"},
    "blocked": {"fg": "magenta", "bold": True}, "pending": {"fg": "yellow"},
    "done": {"fg": "green"}, "failed": {"fg": "red", "bold": True}, "summary": {"bold": True},
    "plain": {},
}
_LIVE: dict[str, Any] = {"fg": "cyan", "bold": True}
_RESTART: dict[str, Any] = {"fg": "bright_magenta", "bold": True}
_TAGGED = ("create", "update", "pending")  # the plan's change lines (and pending results)


def paint(line: Line) -> str:
    """``line``'s text with its tone's colour, and the live and restart tags in theirs."""
    from reconciler.core.render import LIVE_TAGS, RESTART_TAGS

    style = _TONES.get(str(line.tone), {})
    if str(line.tone) not in _TAGGED:
        return click.style(line.text, **style) if style else line.text
    tags = {**{t: _LIVE for t in LIVE_TAGS}, **{t: _RESTART for t in RESTART_TAGS}}
    out, text = [], line.text
    while text:
        at, tag = min(((text.find(t), t) for t in tags if t in text), default=(-1, ""))
        if at < 0:
            out.append(click.style(text, **style) if style else text)
            break
        if at:
            out.append(click.style(text[:at], **style) if style else text[:at])
        out.append(click.style(tag, **tags[tag]))
        text = text[at + len(tag):]
    return "".join(out)


def echo_lines(lines: Iterable[Line], *, err: bool = False) -> None:
    """``lines`` to stdout (stderr with ``err``), coloured when ``colour`` says so."""
    stream = sys.stderr if err else sys.stdout
    if colour(stream):
        click.echo("".join(f"{paint(line)}\n" for line in lines), nl=False, err=err,
                   color=True)
    else:
        click.echo("".join(f"{line.text}\n" for line in lines), nl=False, err=err, color=False)
