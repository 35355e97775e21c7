"""Output a person reads (issue 13.1): on a terminal the plan and the results are coloured by
what each line is (create green, update yellow, destroy red, blocked magenta; the live and
restart tags apart); NO_COLOR (any non-empty value) and --no-color turn colour off, and off a
terminal nothing writes an escape code. Results go to stdout, logs to stderr."""

from __future__ import annotations

import io
import logging
import os
import pty
from pathlib import Path

import pytest
from conftest import run_cli
from terminal import ESCAPE, Terminal, plain

from reconciler.shells import console, logs

ROOT = Path(__file__).parents[2]
CI = ROOT / "tests" / "gitops" / "ci"
PLAN = ["plan", "--instance", "default", "--snapshot", str(CI / "host.snapshot.json"),
        str(CI / "manifests")]
EXAMPLES = f"test://{ROOT / 'examples' / 'test-node.xml'}"

GREEN, YELLOW, RED, MAGENTA, BOLD = "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[35m", "\x1b[1m"
RESET = "\x1b[0m"


def _plan_on_a_terminal(*extra: str, env: dict[str, str] | None = None) -> str:
    term = Terminal(*PLAN, *extra, env=env)
    assert term.finish(30) == 1, term.seen  # web-03 is blocked
    return term.seen.replace("\r\n", "\n")


def test_a_plan_on_a_terminal_is_coloured_by_kind_and_tag() -> None:
    seen = _plan_on_a_terminal(env={"NO_COLOR": ""})  # set but empty: colour stays on
    assert f"{GREEN}+ cache-01   1 vcpu, 512MiB" in seen, seen
    assert f"{YELLOW}~ web-01     vcpus 2 -> 4 {RESET}" in seen, seen
    assert f"{RED}- build-01   destroy (volumes deleted: build-01-root){RESET}" in seen, seen
    assert f"{MAGENTA}{BOLD}! web-03     blocked: pool fast" in seen, seen
    live, restart = "\x1b[36m\x1b[1m(live)", "\x1b[95m\x1b[1m(restart)"
    assert seen.count(live) == 2 and seen.count(restart) == 1, seen
    assert "\x1b[95m\x1b[1m-- restarts the VM" in seen, seen
    assert f"{BOLD}Plan: 1 to create, 2 to update, 1 to destroy, 1 blocked.{RESET}" in seen
    # The words are those of the plain plan: colour adds, never changes.
    assert plain(seen) == run_cli(*PLAN).stdout


@pytest.mark.parametrize(("extra", "env"), [((), {"NO_COLOR": "1"}), (("--no-color",), {})],
                         ids=["NO_COLOR", "--no-color"])
def test_no_color_on_a_terminal_writes_no_escape_code(extra: tuple[str, ...],
                                                      env: dict[str, str]) -> None:
    seen = _plan_on_a_terminal(*extra, env=env)
    assert "+ cache-01   1 vcpu" in seen
    assert not ESCAPE.search(seen), repr(seen)


def test_off_a_terminal_apply_writes_no_escape_code_and_results_go_to_stdout(
        tmp_path: Path) -> None:
    r = run_cli("apply", "--yes", "--connect", EXAMPLES, "--state-dir", tmp_path,
                ROOT / "manifests")
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines()[-5:] == [
        "build-01: created",
        "db-01: created, started",
        "web-01: created, started",
        "web-02: created, started",
        "Apply: 4 done (0 pending restart), 0 failed, 0 blocked."]
    assert "\x1b" not in r.stdout + r.stderr
    assert "converged" not in r.stdout


def _log_line(monkeypatch: pytest.MonkeyPatch, *, no_color: bool = False) -> str:
    """A warning logged by the console renderer to a terminal, as the terminal gets it."""
    import structlog

    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal:
        monkeypatch.setattr("sys.stderr", terminal)
        console.configure(no_color=no_color)
        try:
            logs.configure("console", logging.WARNING)
            structlog.get_logger("t").warning("graceful shutdown refused", vm="web-01")
            terminal.flush()
        finally:
            console.configure(no_color=False)
    text = os.read(master, 65536).decode()
    os.close(master)
    return text


def test_logs_on_a_terminal_honour_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert ESCAPE.search(_log_line(monkeypatch))
    assert not ESCAPE.search(text := _log_line(monkeypatch, no_color=True)), repr(text)
    assert "graceful shutdown refused" in text
    monkeypatch.setenv("NO_COLOR", "1")
    assert not ESCAPE.search(text := _log_line(monkeypatch)), repr(text)


def test_the_colour_decision() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    os.environ.pop("NO_COLOR", None)
    assert console.colour(Tty()) and not console.colour(io.StringIO())
    console.configure(no_color=True)
    try:
        assert not console.colour(Tty())
    finally:
        console.configure(no_color=False)


def test_progress_lines_follow_the_step_and_count_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain "Still ..." line of a VM: the step in flight with its countdown, else its
    action; after a forced power-off, the action again."""
    from reconciler.apply.progress import Activity
    from reconciler.core.result import Deed, Did
    from reconciler.shells import progress

    now = [100.0]
    board = progress._Lines(io.StringIO(), 10.0, lambda: now[0])
    board.began("web-01", Activity.DESTROYING)
    now[0] += 2.4
    board.step("web-01", Activity.SHUTTING_DOWN, timeout=60)
    now[0] += 10.2
    [(name, row)] = board.snapshot()
    assert progress.still(name, row, now[0]) == (
        "web-01: Still shutting down... [10s elapsed, forced off in 50s]")
    now[0] += 50
    board.did("web-01", Deed(Did.FORCED_OFF, after=60))
    now[0] += 11
    [(name, row)] = board.snapshot()
    assert progress.still(name, row, now[0]) == "web-01: Still destroying... [73s elapsed]"
    assert row.done == "forced off after 1m"
    monkeypatch.setenv("RECONCILER_PROGRESS_INTERVAL", "2s")
    assert progress.interval() == 2.0
    monkeypatch.setenv("RECONCILER_PROGRESS_INTERVAL", "0.5")
    assert progress.interval() == 0.5
    monkeypatch.setenv("RECONCILER_PROGRESS_INTERVAL", "soon")
    assert progress.interval() == 10.0
