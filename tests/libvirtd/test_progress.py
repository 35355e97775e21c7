"""Progress on long work (issue 13.2), against real KVM guests: an OS-less guest ignores the
ACPI power button, so every graceful shutdown waits out its shutdownTimeout and is forced off.

- The result says so: ``NAME: forced off after 3s, destroyed`` (never "destroy converged").
- Off a terminal: a plain line per VM every RECONCILER_PROGRESS_INTERVAL (10 s by default),
  ``NAME: Still shutting down... [1s elapsed, forced off in 2s]``; no escape code at all.
- On a terminal: a live display (step, elapsed time, the countdown), gone once apply is done;
  then the coloured results."""

from __future__ import annotations

from pathlib import Path

from conftest import apply, vm_manifest, write_manifest
from terminal import ESCAPE, Terminal, plain


def _running(host, folder: Path, name: str, timeout: str = "3s") -> None:  # type: ignore[no-untyped-def]
    text = vm_manifest(name).replace("shutdownTimeout: 1s", f"shutdownTimeout: {timeout}")
    write_manifest(folder, f"{name}.yaml", text)


def test_off_a_terminal_a_forced_shutdown_shows_still_lines_and_says_forced_off(host, tmp_path,
                                                                               monkeypatch):
    folder = tmp_path / "m"
    name, stay = f"{host.prefix}slow", f"{host.prefix}stay"
    _running(host, folder, name)
    write_manifest(folder, "stay.yaml", vm_manifest(stay, state="stopped"))
    r = apply(host, folder)
    assert r.code == 0
    assert f"{name}: created, started\n" in r.stdout and f"{stay}: created\n" in r.stdout

    monkeypatch.setenv("RECONCILER_PROGRESS_INTERVAL", "1s")
    (folder / f"{name}.yaml").unlink()
    r = apply(host, folder)
    assert r.code == 0, r.stderr
    assert f"{name}: forced off after 3s, destroyed\n" in r.stdout
    assert "converged" not in r.stdout
    # Progress goes to stderr, results to stdout: never mixed.
    assert f"{name}: Still shutting down... [1s elapsed, forced off in 2s]\n" in r.stderr
    assert f"{name}: Still shutting down... [2s elapsed, forced off in 1s]\n" in r.stderr
    assert "Still" not in r.stdout
    assert "\x1b" not in r.stdout + r.stderr
    assert not host.exists(name)


def test_a_stop_that_is_forced_says_so(host, tmp_path):
    folder = tmp_path / "m"
    name = f"{host.prefix}off"
    _running(host, folder, name, timeout="2s")
    assert apply(host, folder).code == 0
    _running(host, folder, name, timeout="2s")
    (folder / f"{name}.yaml").write_text(
        (folder / f"{name}.yaml").read_text().replace("state: running", "state: stopped"))
    r = apply(host, folder)
    assert r.code == 0, r.stderr
    assert f"{name}: forced off after 2s\n" in r.stdout
    assert not host.domain(name).isActive()


def test_on_a_terminal_progress_is_live_and_results_are_coloured(host, tmp_path):
    folder = tmp_path / "m"
    name, stay = f"{host.prefix}live", f"{host.prefix}stay"
    _running(host, folder, name)
    write_manifest(folder, "stay.yaml", vm_manifest(stay, state="stopped"))
    assert apply(host, folder).code == 0
    (folder / f"{name}.yaml").unlink()

    term = Terminal("apply", "--yes", "--connect", host.uri, "--state-dir",
                    str(tmp_path / "state"), str(folder))
    # The live display: the VM, its step, the time elapsed and the countdown.
    term.expect("shutting down")
    term.expect("forced off in 1s", timeout=10)
    assert term.finish() == 0, term.seen
    seen = term.seen
    assert f"\x1b[31m- {name}" in seen, repr(seen)  # the plan's destroy line, red
    assert f"\x1b[32m{name}: forced off after 3s, destroyed\x1b[0m" in seen, repr(seen)
    text = plain(seen)
    assert "Still shutting down" not in text  # the plain lines are for logs and pipes
    assert text.rstrip().endswith("Apply: 1 done (0 pending restart), 0 failed, 0 blocked."), text
    assert ESCAPE.search(seen)
