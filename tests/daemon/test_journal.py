"""Logs under systemd: when stderr is the journal's stream (``JOURNAL_STREAM`` names the
device and inode of fd 2, systemd.exec(5)), every line starts with its syslog priority
(sd-daemon(3): ``<3>`` is err), so that `journalctl -p err` shows the errors."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess

import daemonproc
import pytest
import structlog
from conftest import run_cli, vm_manifest, write_manifest
from daemonproc import wait_for

from reconciler.shells import logs

daemon_factory = daemonproc.daemon_factory  # the fixture

PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
PREFIX = re.compile(r"<(\d)>")


@pytest.fixture(autouse=True)
def _structlog_reset():  # type: ignore[no-untyped-def]
    """The logging these tests configure writes to their captured stderr: not after them."""
    yield
    structlog.reset_defaults()


def _journal_stream(fd: int) -> str:
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


def _log_each_level(fmt: str) -> None:
    logs.configure(fmt, level=logging.DEBUG)
    log = structlog.get_logger("reconciler.test")
    for level in PRIORITY:
        getattr(log, level)(f"a {level} record", vm="web-01")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_under_the_journal_each_line_starts_with_its_priority(fmt, capfd, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(2))
    _log_each_level(fmt)
    lines = capfd.readouterr().err.splitlines()
    assert [line[:3] for line in lines] == [f"<{p}>" for p in PRIORITY.values()], lines
    for line, level in zip(lines, PRIORITY, strict=True):
        assert f"a {level} record" in line
    if fmt == "json":  # what follows the prefix is the JSON line as before
        assert [json.loads(line[3:])["level"] for line in lines] == list(PRIORITY)


def test_a_traceback_under_the_journal_is_err_on_every_line(capfd, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(2))
    logs.configure("console")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("reconciler.test").exception("the reconcile loop crashed")
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) > 3 and any("RuntimeError: boom" in line for line in lines)
    assert all(line.startswith("<3>") for line in lines), lines


@pytest.mark.parametrize("stream", [None, "1:1", "garbage"])
def test_elsewhere_lines_carry_no_prefix(stream, capfd, monkeypatch):
    """No JOURNAL_STREAM, or one inherited by a process whose stderr goes elsewhere (a pipe,
    a file): plain lines."""
    if stream is None:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    else:
        monkeypatch.setenv("JOURNAL_STREAM", stream)
    _log_each_level("json")
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == len(PRIORITY)
    assert [json.loads(line)["level"] for line in lines] == list(PRIORITY)


def test_the_daemon_under_the_journal_logs_errors_as_err(tmp_path, daemon_factory):
    """The daemon, its stderr the stream systemd would give it: a manifest problem is <3>, a
    metrics port taken <4>, `started` <6>; every line has its level's priority."""
    manifests = tmp_path / "m"
    write_manifest(manifests, "ok.yaml", vm_manifest("journal-ok", state="stopped"))
    write_manifest(manifests, "bad.yaml", vm_manifest("journal-bad", memory="2GB"))
    log_file = tmp_path / "daemon.log"  # the daemon's stdout and stderr (daemonproc)
    log_file.touch()
    st = log_file.stat()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        daemon = daemon_factory(manifests, "test:///default", port=taken.getsockname()[1],
                                env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        daemon.wait_ready()
        assert wait_for(lambda: "manifest problem" in daemon.output(), 5)
    lines = [line for line in daemon.output().splitlines() if line]
    seen = {}
    for line in lines:
        match = PREFIX.match(line)
        assert match, f"no priority: {line!r}"
        record = json.loads(line[match.end():])
        assert int(match[1]) == PRIORITY[record["level"]], line
        seen.setdefault(record["event"], int(match[1]))
    assert seen["manifest problem"] == 3
    assert seen["metrics not served; running without them, trying again at each reconcile "
                "(each reconciler instance on a host needs its own --metrics-addr, or `off`)"] \
        == 4
    assert seen["started"] == 6


def test_run_has_no_format_option(tmp_path):
    """`run` prints nothing but its log: `--log-format` chooses that; `--format` (which did
    nothing) is refused as on any command it means nothing to."""
    help_text = run_cli("run", "--help").stdout
    assert "--log-format" in help_text
    assert "--format" not in help_text.replace("--log-format", "")
    r = run_cli("run", "--format", "json", str(tmp_path))
    assert r.code == 2
    assert "No such option '--format'. Did you mean '--log-format'?" in r.stderr


def test_a_command_error_under_the_journal_is_err(tmp_path):
    """The one line a command ends with on an error (not a log record) is err too."""
    err = tmp_path / "stderr"
    with err.open("w") as stream:
        st = os.fstat(stream.fileno())
        code = subprocess.run(
            [daemonproc.RECONCILER, "run", "--instance", "../x", "--metrics-addr", "off",
             str(tmp_path)], stderr=stream, stdout=subprocess.DEVNULL, timeout=60,
            env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}).returncode
    assert code == 1
    assert err.read_text().startswith("<3>reconciler: instance name '../x' is not allowed")
