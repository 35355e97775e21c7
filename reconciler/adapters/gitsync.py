"""Pull mode's git side (`reconciler run --git URL`): a bare clone of one branch kept in the
state directory (``adapters.checkouts``), fetched with the git CLI, and a commit's manifest
folder exported from it. Credentials come from the environment or an SSH key file: they never
reach git's command line, and ``redact`` takes them out of any text (URLs, git's messages)
before it is logged or written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from reconciler.core.errors import PermanentError
from reconciler.core.record import Record

FETCH_TIMEOUT = 120.0  # seconds one `git fetch` may take (then git is killed)
LOCAL_TIMEOUT = 60.0  # seconds a local git command may take (reading a commit, exporting it)
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/@\s]*)@")
_SECRET_SCHEMES = ("http", "https", "ftp", "ftps")  # a lone user name there may be a token
# git's variables that would point it at another repository than the one given
_REPOSITORY_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                         "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
                         "GIT_ASKPASS", "SSH_ASKPASS", "GIT_CONFIG_COUNT")


@dataclass(frozen=True, eq=False, repr=False)
class Remote(Record):
    """What pull mode follows: ``url`` (https, ssh, git or file), ``branch``, ``path`` (the
    manifest folder inside the repository, POSIX, ``.`` for its root), ``interval`` (seconds
    between fetches), ``ssh_key`` (a private key file for an SSH URL, or None)."""

    url: str
    branch: str = "main"
    path: str = "."
    interval: float = 30.0
    ssh_key: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(PurePosixPath(self.path or ".")))


class GitError(Exception):
    """A git command failed or did not finish in time; the message is redacted."""


class Killed(GitError):
    """``Git.kill`` ended the command (the daemon is stopping)."""


class NoFolder(GitError):
    """The commit has no folder at the manifest path."""


def check(remote: Remote) -> None:
    """Raises PermanentError for a URL, branch or path pull mode refuses."""
    if not remote.url or remote.url.startswith("-") or any(c.isspace() for c in remote.url):
        raise PermanentError(f"--git {redact(remote.url)!r} is not a git URL")
    if (not remote.branch or remote.branch.startswith("-") or ".." in remote.branch
            or re.search(r"[\s~^:?*\[\\]|@\{|//|\.lock$|^/|/$|\.$", remote.branch)):
        raise PermanentError(f"--branch {remote.branch!r} is not a branch name")
    folder = PurePosixPath(remote.path)
    if folder.is_absolute() or ".." in folder.parts or "\\" in remote.path:
        raise PermanentError(f"--git-path {remote.path!r} must be a folder inside the "
                             "repository (relative, without ..)")
    if remote.interval < 1:
        raise PermanentError("--git-interval must be at least 1s")
    if remote.ssh_key is not None and not os.access(remote.ssh_key, os.R_OK):
        raise PermanentError(f"--git-ssh-key {remote.ssh_key}: no such file, or it cannot "
                             "be read")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with the password of every ``scheme://user:password@`` URL in it, the whole
    user part of an http(s) URL (a token may stand there), and each of ``secrets`` (in plain
    and URL-quoted form) replaced by ``***``."""

    def userinfo(match: re.Match[str]) -> str:
        scheme, info = match.group("scheme"), match.group("info")
        if scheme[:-3].lower() in _SECRET_SCHEMES or not info:
            return f"{scheme}***@" if info else match.group(0)
        user = info.split(":", 1)[0]
        return f"{scheme}{user}:***@" if ":" in info else match.group(0)

    text = _USERINFO.sub(userinfo, text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, "***")
    return text


@dataclass(frozen=True, eq=False, repr=False)
class Access(Record):
    """How git reaches the remote: ``url`` without any credential, ``env`` for git, and the
    ``secrets`` to take out of git's messages."""

    url: str
    env: Mapping[str, str] = field(repr=False)  # never in a traceback's locals
    secrets: tuple[str, ...] = field(repr=False)


def access(remote: Remote, environ: Mapping[str, str]) -> Access:
    """git's URL and environment for ``remote``. HTTP(S): a user and password in the URL, or
    ``RECONCILER_GIT_TOKEN`` (with ``RECONCILER_GIT_USERNAME``, else the URL's user, else
    ``git``), are handed to git by a credential helper that reads them from git's environment;
    the URL git is given holds neither. SSH: ``ssh_key`` (``-i``, only that key), batch mode
    (never a prompt). Never a terminal prompt; only the file, git, http(s) and ssh
    protocols."""
    env = {k: v for k, v in environ.items() if k not in _REPOSITORY_VARIABLES
           and not k.startswith("GIT_CONFIG_")}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_ALLOW_PROTOCOL="file:git:http:https:ssh")
    url, secrets = remote.url, []
    token = environ.get("RECONCILER_GIT_TOKEN") or None
    parts = urlsplit(url) if "://" in url else None
    if parts is not None and parts.scheme.lower() in ("http", "https"):
        user = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        if user is not None:
            if password is None and len(user) >= 16:  # a token as the user name
                secrets.append(user)
            url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        if password is None:
            password = token if token is not None else ("" if user else None)
        if password is not None:
            secrets.append(password)
            env.update(_helper(user or environ.get("RECONCILER_GIT_USERNAME") or "git",
                               password))
    elif token:
        secrets.append(token)
    if remote.ssh_key is not None:
        env["GIT_SSH_COMMAND"] = (f"ssh -i {shlex.quote(str(remote.ssh_key))} "
                                  "-o IdentitiesOnly=yes -o BatchMode=yes")
    elif "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return Access(url, env, tuple(secrets))


def _helper(user: str, password: str) -> dict[str, str]:
    """A credential helper (git config by environment: never on a command line) answering
    ``get`` from git's environment; the user's own helpers are not asked, nor told to store."""
    script = ('!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" '
              '"$RECONCILER_GIT_HELPER_USERNAME" "$RECONCILER_GIT_HELPER_PASSWORD"; }; f')
    return {"GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": "credential.helper", "GIT_CONFIG_VALUE_1": script,
            "RECONCILER_GIT_HELPER_USERNAME": user, "RECONCILER_GIT_HELPER_PASSWORD": password}


class Git:
    """git commands on the bare clone ``repo``, one at a time, each in a process group of its
    own (so a remote helper or ssh it started dies with it) and killed at its timeout or by
    ``kill`` (from any thread)."""

    def __init__(self, repo: Path, reach: Access) -> None:
        self.repo = repo
        self.access = reach
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed = False
        self._unclean = True  # a git may have been killed in the clone: look for its locks

    def kill(self) -> None:
        """Kill the command running now, and refuse any later one."""
        with self._lock:
            self._killed = True
            if self._proc is not None and self._proc.poll() is None:
                _kill_group(self._proc)

    def run(self, *args: str, timeout: float = LOCAL_TIMEOUT,
            env: Mapping[str, str] | None = None) -> str:
        """git's standard output (text). Raises GitError (redacted): git failed (its first
        lines of standard error), did not finish within ``timeout`` seconds, or was killed."""
        command = ["git", f"--git-dir={self.repo}", *args]
        what = next((a for a in args if not a.startswith("-")), "")
        with self._lock:
            if self._killed:
                raise Killed("stopped")
            try:
                proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={**self.access.env, **(env or {})},
                                        start_new_session=True)
            except OSError as exc:
                raise GitError(f"git cannot run: {exc.strerror or exc}") from exc
            self._proc = proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            self._unclean = True
            raise GitError(f"git {what} did not finish within {timeout:.0f} s") from None
        finally:
            with self._lock:
                self._proc = None
        if proc.returncode != 0:
            if self._killed:
                raise Killed("stopped")
            if proc.returncode < 0:
                self._unclean = True
            lines = [x.strip() for x in err.decode(errors="replace").splitlines() if x.strip()]
            said = "; ".join(lines[-3:]) or f"exit status {proc.returncode}"
            raise GitError(redact(f"git {what} failed: {said}", self.access.secrets))
        return out.decode(errors="replace")

    def ensure(self) -> None:
        """The bare clone exists; lock files a killed git left in it are removed (only this
        instance's daemon, under its writer lock, runs git here)."""
        if not (self.repo / "HEAD").is_file():
            self.repo.mkdir(parents=True, exist_ok=True)
            self.run("init", "--quiet", "--bare", "--template=")
        if self._unclean:
            for stale in self.repo.rglob("*.lock"):
                stale.unlink(missing_ok=True)
            self._unclean = False

    def fetch(self, branch: str) -> str:
        """Fetch ``branch`` and return its commit (40 hex digits)."""
        self.run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                 "--no-recurse-submodules", "--", self.access.url,
                 f"+refs/heads/{branch}:refs/pulled/head", timeout=FETCH_TIMEOUT)
        sha = self.run("rev-parse", "--verify", "--quiet", "refs/pulled/head^{commit}").strip()
        if not _HEX40.match(sha):
            raise GitError(f"git rev-parse gave {sha[:80]!r}, no commit")
        return sha

    def describe(self, sha: str) -> tuple[str, str]:
        """A commit's subject (its first line) and committer time (ISO 8601)."""
        subject, _, when = self.run("log", "-1", "--format=%s%x00%cI", sha).strip().partition("\0")
        return subject, when

    def export(self, sha: str, path: str, target: Path) -> None:
        """Write the tree of ``path`` (a folder) in commit ``sha`` below ``target/path``, as
        git checks files out (symbolic links as links).
        Raises NoFolder when the commit has no such folder, GitError when git fails."""
        folder = target / path
        folder.mkdir(parents=True, exist_ok=True)
        index = target.parent / f".index-{target.name}"
        env = {"GIT_INDEX_FILE": str(index)}
        tree = f"{sha}^{{tree}}" if path == "." else f"{sha}:{path}"
        try:
            try:
                self.run("read-tree", tree, env=env)
            except Killed:
                raise
            except GitError as exc:
                raise NoFolder(f"commit {sha[:12]} has no folder {path}") from exc
            self.run(f"--work-tree={folder}", "checkout-index", "--all", "--force", env=env)
        finally:
            index.unlink(missing_ok=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):  # gone already
        os.killpg(proc.pid, signal.SIGKILL)
