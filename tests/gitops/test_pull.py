"""Pull mode: `reconciler run --git URL` follows a branch of a repository (here a local bare
one, and the same served over HTTP with a password), on the real libvirtd."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import libvirt
from conftest import QEMU_URI, TEST_URI, run_cli, vm_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
from daemonproc import Daemon, wait_for

from reconciler.adapters import gitsync

SECRET = "s3cr3t-Pa55word"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.net", "-c",
       "init.defaultBranch=main"]


class Upstream:
    """A bare repository in ``tmp`` and a clone of it to push from."""

    def __init__(self, tmp: Path) -> None:
        self.bare = tmp / "upstream.git"
        self.work = tmp / "work"
        subprocess.run([*GIT, "init", "-q", "--bare", str(self.bare)], check=True)
        subprocess.run([*GIT, "init", "-q", str(self.work)], check=True)
        self.url = self.bare.as_uri()

    def push(self, files: dict[str, str | None], message: str) -> str:
        """Write (or, for None, remove) ``files``, commit, push to main; the commit."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git = [*GIT, "-C", str(self.work)]
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", message], check=True)
        subprocess.run([*git, "push", "-q", str(self.bare), "HEAD:refs/heads/main"], check=True)
        subprocess.run([*GIT, "--git-dir", str(self.bare), "update-server-info"], check=True)
        return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()


@contextlib.contextmanager
def daemon(tmp: Path, uri: str, *args: str, env: dict[str, str] | None = None,
           ) -> Iterator[Daemon]:
    """A daemon in pull mode (``args``: --git ...), its own folder in ``tmp`` for its notify
    socket and log, the state directory shared; stopped at the end."""
    folder = tmp / f"daemon-{len(list(tmp.glob('daemon-*')))}"
    folder.mkdir()
    d = Daemon(None, tmp / "state", uri, folder, args=args, env=env)
    try:
        yield d
    finally:
        d.stop()


def status(tmp: Path, fmt: str = "text") -> tuple[int, str]:
    r = run_cli("status", "--state-dir", tmp / "state", "--format", fmt)
    return r.code, r.stdout


def vcpus(host, name: str) -> int:  # type: ignore[no-untyped-def]
    return host.domain(name).vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def test_a_pushed_commit_is_followed_a_broken_one_is_not_applied_and_a_fix_converges(
        host, tmp_path):
    up = Upstream(tmp_path)
    a, b = f"{host.prefix}a", f"{host.prefix}b"
    first = up.push({"vms/a.yaml": vm_manifest(a, state="stopped"), "README.md": "VMs\n"},
                    "add a")
    args = ("--git", up.url, "--git-path", "vms", "--git-interval", "1s")
    with daemon(tmp_path, QEMU_URI, *args) as d:
        d.wait_ready()
        assert host.exists(a), d.output()
        assert first in host.xml(a, inactive=True)  # the commit recorded in the domain
        code, text = status(tmp_path)
        assert code == 0 and f"In force:  {first[:12]}  add a" in text, text

        broken = up.push({"vms/a.yaml": vm_manifest(a, vcpus=2, max_vcpus=2, state="stopped"),
                          "vms/b.yaml": vm_manifest(b, memory="64", state="stopped")},
                         "grow a, add b")
        assert wait_for(lambda: broken[:12] in status(tmp_path)[1], 10), d.output()
        code, text = status(tmp_path)
        assert code == 1, text
        assert f"In force:  {first[:12]}  add a" in text, text
        assert f"Latest:    {broken[:12]}  grow a, add b" in text and "rejected" in text, text
        assert "  vms/b.yaml:7:3: spec.memory: 64 is not a quantity" in text, text
        pulled = json.loads(status(tmp_path, "json")[1])["git"]
        assert pulled["good"]["commit"] == first and pulled["latest"]["commit"] == broken
        assert not host.exists(b) and vcpus(host, a) == 1  # nothing of it applied
        assert any(e.get("event", "").startswith("commit rejected") for e in d.events())

    # A restart keeps the good commit in force; the broken one is still not applied.
    with daemon(tmp_path, QEMU_URI, *args) as d:
        d.wait_ready()
        assert not host.exists(b) and vcpus(host, a) == 1
        assert wait_for(lambda: broken[:12] in status(tmp_path)[1], 10), d.output()
        assert f"In force:  {first[:12]}" in status(tmp_path)[1]

        fixed = up.push({"vms/b.yaml": vm_manifest(b, state="stopped")}, "fix b")
        assert wait_for(lambda: host.exists(b) and vcpus(host, a) == 2, 15), d.output()
        assert fixed in host.xml(a, inactive=True) and fixed in host.xml(b, inactive=True)
        assert wait_for(lambda: status(tmp_path)[0] == 0, 10), status(tmp_path)
        code, text = status(tmp_path)
        assert f"In force:  {fixed[:12]}  fix b" in text and "Latest:    the commit in force" \
            in text, text
        assert d.stop() == 0
    checkouts = tmp_path / "state" / "git" / os.environ["RECONCILER_INSTANCE"] / "checkouts"
    assert len(list(checkouts.iterdir())) <= 2  # the one in force and the previous good one


class _Auth(SimpleHTTPRequestHandler):
    """A dumb git HTTP server that wants a user and password (Basic)."""

    expected = ""
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization") or "")
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def served(folder: Path, user: str, password: str) -> Iterator[tuple[str, list[str]]]:
    """``folder`` over HTTP on 127.0.0.1, with a password: (its URL, the Authorization
    headers received)."""
    seen: list[str] = []
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    handler = type("Handler", (_Auth,), {"expected": f"Basic {token}", "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()


def spy(tmp: Path, name: str, *, then: str) -> tuple[dict[str, str], Path]:
    """A ``name`` first on PATH that records its pid and arguments, then runs ``then``:
    (the environment, the record)."""
    folder = tmp / "bin"
    folder.mkdir(exist_ok=True)
    record = tmp / f"{name}.calls"
    script = folder / name
    script.write_text(f'#!/bin/sh\necho "$$ $*" >> {record}\n{then}\n')
    script.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}, record


def test_credentials_never_show_and_sighup_fetches_at_once(host, tmp_path):
    up = Upstream(tmp_path)
    a, b = f"{host.prefix}a", f"{host.prefix}b"
    up.push({"a.yaml": vm_manifest(a, state="stopped")}, "add a")
    env, calls = spy(tmp_path, "git", then='exec /usr/bin/git "$@"')
    with served(up.bare, "deploy", SECRET) as (url, seen):
        secret_url = url.replace("http://", f"http://deploy:{SECRET}@")
        with daemon(tmp_path, QEMU_URI, "--git", secret_url, "--git-interval", "1h",
                    env=env) as d:
            d.wait_ready()
            assert host.exists(a), d.output()
            second = up.push({"b.yaml": vm_manifest(b, state="stopped")}, "add b")
            d.proc.send_signal(signal.SIGHUP)  # the next fetch would be in an hour
            assert wait_for(lambda: host.exists(b), 10), d.output()
            assert second in host.xml(b, inactive=True)
            texts = [status(tmp_path)[1], status(tmp_path, "json")[1]]
            assert d.stop() == 0
            texts.append(Path(d.log.name).read_text())  # the whole log
    assert any(s.startswith("Basic ") for s in seen) and "" in seen  # asked, then answered
    assert "Git:       http://***@127.0.0.1:" in texts[0], texts[0]
    texts.append(calls.read_text())  # git's command lines
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode(errors="replace"))
    assert not [t for t in texts if SECRET in t]


def test_a_token_in_the_environment_reaches_git_but_never_its_command_line(tmp_path):
    up = Upstream(tmp_path)
    first = up.push({"a.yaml": "kind: nothing\n"}, "one")
    env, calls = spy(tmp_path, "git", then='exec /usr/bin/git "$@"')
    with served(up.bare, "git", SECRET) as (url, _):
        environ = {**os.environ, **env, "RECONCILER_GIT_TOKEN": SECRET}
        reach = gitsync.access(gitsync.Remote(url), environ)
        repo = gitsync.Git(tmp_path / "clone", reach)
        repo.ensure()
        assert repo.fetch("main") == first
        wrong = gitsync.access(gitsync.Remote(url), {**environ, "RECONCILER_GIT_TOKEN": "no"})
        try:
            gitsync.Git(tmp_path / "clone", wrong).fetch("main")
        except gitsync.GitError as exc:
            assert "Authentication failed" in str(exc) and SECRET not in str(exc)
        else:
            raise AssertionError("a wrong token fetched")
    assert SECRET not in calls.read_text()


def test_an_ssh_key_is_the_only_identity_and_ssh_never_prompts(tmp_path):
    key = tmp_path / "deploy key"
    key.write_text("not a key\n")
    env, calls = spy(tmp_path, "ssh", then="exit 255")
    environ = {**os.environ, **env}
    environ.pop("GIT_SSH_COMMAND", None)
    remote = gitsync.Remote("ssh://git@127.0.0.1:1/repo.git", ssh_key=key)
    repo = gitsync.Git(tmp_path / "clone", gitsync.access(remote, environ))
    repo.ensure()
    try:
        repo.fetch("main")
    except gitsync.GitError as exc:
        assert "fetch failed" in str(exc)
    else:
        raise AssertionError("fetched through an ssh that exits 255")
    line = calls.read_text()
    assert f"-i {key} -o IdentitiesOnly=yes -o BatchMode=yes" in line, line


def test_a_fetch_that_hangs_holds_up_neither_the_loop_nor_sigterm(tmp_path):
    env, calls = spy(tmp_path, "git", then='exec /usr/bin/git "$@"')
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/repo.git"
        with daemon(tmp_path, TEST_URI, "--git", url, "--git-interval", "1s", env=env) as d:
            def written() -> dict:  # type: ignore[type-arg]
                return json.loads(status(tmp_path, "json")[1])

            assert wait_for(lambda: "waiting for the first fetch" in
                            written()["daemon"]["error"], 10), d.output()
            assert written()["daemon"]["ready"] is False
            fetches = [line.split()[0] for line in calls.read_text().splitlines()
                       if " fetch " in line]
            assert len(fetches) == 1 and Path(f"/proc/{fetches[0]}").exists()  # hangs
            code, text = status(tmp_path)
            assert code == 1 and "In force:  none" in text and "Fetch:     not yet" in text
            assert d.stopped_within(5) == 0, d.output()
    assert wait_for(lambda: not _alive(int(fetches[0])), 3)  # git was killed


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
