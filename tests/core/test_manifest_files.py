"""Manifest files that are not plain, finished YAML files (issue 11, kind 1): only regular files
are read, never blocking; a path with a manifest's name that is no regular file, and a file or
directory over the byte limits, is a problem (so it holds back every destroy) and is never
parsed; no value from under ``spec`` reaches a message when its type is wrong."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from conftest import TEST_URI, run_cli, vm_manifest, write_manifest
from test_loader import _as_nobody  # runs a function as uid 65534 (the tests run as root)

from reconciler.adapters import files
from reconciler.adapters.manifests import load_desired, load_file, load_tree

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
SECRET = "hunter2-s3cr3t"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The CLI as its own process: a hang is a failed test (a timeout), not a hung suite."""
    return subprocess.run([RECONCILER, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def two_vms(root: Path) -> None:
    write_manifest(root, "a.yaml", vm_manifest("vm-a"))
    write_manifest(root, "b.yaml", vm_manifest("vm-b"))


# --- FIFOs, sockets, devices, folders with a manifest's name ----------------------------------


def test_a_fifo_named_like_a_manifest_does_not_hang_validate_or_plan(workdir: Path) -> None:
    root = workdir / "m"
    write_manifest(root, "a.yaml", vm_manifest("vm-a"))
    os.mkfifo(root / "b.yaml")
    result = cli("validate", "m", cwd=workdir)
    assert result.returncode == 1
    assert result.stdout == ("m/b.yaml: not a regular file (a FIFO); only regular files are read "
                             "as manifests: replace it with a file or remove it\n")
    planned = cli("plan", "--connect", TEST_URI, "m", cwd=workdir)
    assert planned.returncode == 1
    assert "m/b.yaml: not a regular file (a FIFO)" in planned.stderr
    assert "+ vm-a" in planned.stdout  # creates of the valid manifests still go ahead


def test_a_symlink_to_a_fifo_or_a_socket_is_not_read(workdir: Path) -> None:
    root = workdir / "m"
    write_manifest(root, "a.yaml", vm_manifest("vm-a"))
    os.mkfifo(root / "pipe")  # no manifest name: never looked at
    (root / "b.yaml").symlink_to(root / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "c.yml"))
        found, problems = files.manifest_files(root)
        assert [p.name for p in found] == ["a.yaml"]
        assert [(p.file, p.message.split(";")[0]) for p in problems] == [
            ("m/b.yaml", "not a regular file (a FIFO)"),
            ("m/c.yml", "not a regular file (a socket)"),
        ]


def in_child(code: str, cwd: Path, timeout: float = 30) -> str:
    """``code`` run by Python in a child with at most 1 GiB of memory and ``timeout`` seconds:
    what reads an endless file must fail the test, not the machine."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, preexec_fn=limit,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_a_device_node_is_not_opened(workdir: Path) -> None:
    root = workdir / "m"
    root.mkdir()
    try:
        os.mknod(root / "zero.yaml", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
    except PermissionError:
        pytest.skip("mknod needs root")
    out = in_child("from pathlib import Path\n"
                   "from reconciler.adapters.manifests import load_tree\n"
                   "documents, problems = load_tree(Path('m'))\n"
                   "print(len(documents)); print(*problems, sep='\\n')\n", workdir)
    assert out.splitlines() == [
        "0", "m/zero.yaml: not a regular file (a character device); only regular files are read "
             "as manifests: replace it with a file or remove it"]


def test_a_file_turned_into_a_fifo_after_listing_is_not_read(workdir: Path) -> None:
    # The listing saw a file; by the time it is read it is a FIFO: opened without blocking,
    # and fstat says it is no file.
    root = workdir / "m"
    path = write_manifest(root, "b.yaml", vm_manifest("vm-b"))
    path.unlink()
    os.mkfifo(path)
    started = time.monotonic()
    documents, problems = load_file(path, root)
    assert time.monotonic() - started < 5
    assert documents == []
    assert [str(p) for p in problems] == [
        "m/b.yaml: not a regular file (a FIFO); only regular files are read as manifests: "
        "replace it with a file or remove it"]


def test_a_folder_named_like_a_manifest_holds_back_destroys(
        workdir: Path, testdrv: libvirt.virConnect, prefix: str) -> None:
    # b.yaml was a file; now it is a folder (a bad merge, a tool that unpacked into it). Its
    # VMs must not be destroyed.
    root, a, b = workdir / "m", f"{prefix}a", f"{prefix}b"
    write_manifest(root, "a.yaml", vm_manifest(a, state="stopped"))
    write_manifest(root, "b.yaml", vm_manifest(b, state="stopped"))
    apply = ("apply", "--yes", "--connect", TEST_URI, "--state-dir", workdir / "s", "m")
    assert run_cli(*apply).code == 0
    (root / "b.yaml").unlink()
    write_manifest(root, "b.yaml/inner.yaml", vm_manifest(f"{prefix}inner", state="stopped"))
    result = run_cli(*apply)
    assert result.code == 1
    assert ("m/b.yaml: a folder with a manifest's name; rename it (a folder's name must not "
            "end in .yaml or .yml)") in result.stderr
    assert f"! {b}" in result.stdout  # held back: "1 manifest problem"
    assert "inner" not in result.stdout  # its contents are not read
    assert testdrv.lookupByName(b)


def test_a_path_argument_with_a_manifest_name_that_is_a_folder_is_a_problem(
        workdir: Path) -> None:
    # `reconciler apply manifests/web.yaml` meant one file; read as the manifest directory, it
    # would destroy every VM not in it.
    write_manifest(workdir, "web.yaml/a.yaml", vm_manifest("vm-a"))
    validated = load_desired(workdir / "web.yaml")
    assert validated.vms == ()
    assert [str(p) for p in validated.problems] == [
        "web.yaml: a folder with a manifest's name; rename it (a folder's name must not end in "
        ".yaml or .yml)"]


def test_a_path_argument_that_is_a_fifo_is_a_problem(workdir: Path) -> None:
    os.mkfifo(workdir / "vm.yaml")
    result = cli("validate", "vm.yaml", cwd=workdir)
    assert result.returncode == 1
    assert result.stdout.startswith("vm.yaml: not a regular file (a FIFO)")


def test_an_unreadable_file_is_a_problem_with_the_reason() -> None:
    # Read by a user who may not read it (the tests run as root, who reads any file).
    top = Path(tempfile.mkdtemp(prefix="reconciler-test-"))
    try:
        top.chmod(0o755)
        write_manifest(top, "m/a.yaml", vm_manifest("vm-a"))
        write_manifest(top, "m/b.yaml", vm_manifest("vm-b"))
        (top / "m").chmod(0o755)
        load_desired(top / "m")  # imports what the child, who may not read the venv, needs
        (top / "m" / "a.yaml").chmod(0)
        (top / "m" / "b.yaml").chmod(0o644)
        def load() -> object:
            os.chdir(top)
            validated = load_desired(Path("m"))
            return [[vm.spec.name for vm in validated.vms], [str(p) for p in validated.problems]]

        assert _as_nobody(load) == [["vm-b"], ["m/a.yaml: cannot read: Permission denied"]]
    finally:
        shutil.rmtree(top)


def test_a_link_to_dev_zero_is_not_read(workdir: Path) -> None:
    root = workdir / "m"
    write_manifest(root, "a.yaml", vm_manifest("vm-a"))
    (root / "zero.yaml").symlink_to("/dev/zero")
    out = in_child("from pathlib import Path\n"
                   "from reconciler.adapters.manifests import load_desired\n"
                   "print(*load_desired(Path('m')).problems, sep='\\n')\n", workdir)
    assert out.splitlines() == [
        "m/zero.yaml: symbolic link to /dev/zero, outside the manifest directory; copy the files "
        "in, or point the reconciler at a folder that holds them all"]


def test_a_file_that_vanishes_after_listing_is_a_problem(workdir: Path) -> None:
    root = workdir / "m"
    path = write_manifest(root, "a.yaml", vm_manifest("vm-a"))
    path.unlink()
    assert [str(p) for p in load_file(path, root)[1]] == [
        "m/a.yaml: cannot read: No such file or directory (it vanished while being read)"]


# --- the byte limits -------------------------------------------------------------------------


def test_a_file_over_the_byte_limit_is_refused_before_it_is_parsed(workdir: Path) -> None:
    root = workdir / "m"
    write_manifest(root, "a.yaml", vm_manifest("vm-a"))
    big = root / "big.yaml"
    with big.open("w") as f:  # 100 MB of small keys: parsed, 7.5 s and 1.4 GB
        line = "".join(f"k{i}: {i}\n" for i in range(10_000))
        while f.tell() < 100_000_000:
            f.write(line)
    started = time.monotonic()
    validated = load_desired(root)
    assert time.monotonic() - started < 2
    limit = files.MAX_FILE_BYTES
    assert [str(p) for p in validated.problems] == [
        f"m/big.yaml: {big.stat().st_size} bytes, more than the limit of {limit} bytes for one "
        "manifest file; split it, or remove it"]
    assert [vm.spec.name for vm in validated.vms] == ["vm-a"]


def test_a_file_that_grows_past_the_limit_while_read_is_refused(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The limit is checked on what was read, not only on the size fstat gave.
    root = workdir / "m"
    path = write_manifest(root, "a.yaml", vm_manifest("vm-a"))
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    real_fstat = os.fstat
    monkeypatch.setattr(files.os, "fstat", lambda fd: _shrunk(real_fstat(fd)))
    _, problems = load_file(path, root)
    assert [p.message for p in problems] == [
        "more than the limit of 100 bytes for one manifest file; split it, or remove it"]


def _shrunk(info: os.stat_result) -> os.stat_result:
    fields = list(info)
    fields[6] = 1  # st_size: the file looked small when it was opened
    return os.stat_result(fields)


def test_a_directory_over_the_byte_limit_is_refused_before_anything_is_parsed(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = workdir / "m"
    for i in range(5):
        write_manifest(root, f"v{i}.yaml", vm_manifest(f"vm-{i}"))
    total = sum(p.stat().st_size for p in root.iterdir())
    monkeypatch.setattr(files, "MAX_TOTAL_BYTES", total - 1)
    validated = load_desired(root)
    assert validated.vms == ()
    assert [str(p) for p in validated.problems] == [
        f"m: the manifest files hold {total} bytes, more than the limit of {total - 1} bytes "
        "for a manifest directory; nothing is read"]
    monkeypatch.setattr(files, "MAX_TOTAL_BYTES", total)
    assert len(load_desired(root).vms) == 5


def test_the_limits_are_documented(workdir: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"{files.MAX_FILE_BYTES // (1 << 20)} MiB" in readme
    assert f"{files.MAX_TOTAL_BYTES // (1 << 20)} MiB" in readme


# --- values under spec -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    # the whole spec written as a block string
    f"spec: |\n  cloudInit:\n    userData: |\n      password: {SECRET}\n",
    # a string where a mapping or a list belongs
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  cloudInit: 'password: {SECRET}'\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  disks: '{SECRET}'\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  networks: ['{SECRET}']\n",
    # a string where a number or a boolean belongs
    f"spec:\n  vcpus: '{SECRET}'\n  memory: 64MiB\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  protect: '{SECRET}'\n",
    # a mapping where a string belongs, anywhere under spec
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  description: {{password: {SECRET}}}\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  state: [{SECRET}]\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  networks: [{{network: [{SECRET}]}}]\n",
    # a multi-line string in a field of words or sizes
    f"spec:\n  vcpus: 1\n  memory: |\n    64MiB\n    {SECRET}\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  state: |\n    {SECRET}\n    running\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  description: '{SECRET * 400}'\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  boot: [hd, hd, {{a: '{SECRET}'}}]\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  disks: [{{name: r, size: 1GiB, pool: ''}}, "
    f"'{SECRET}']\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  cloudInit: {{userData: {{a: {SECRET}}}}}\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  cloudInit: {{metaData: '{SECRET}'}}\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  cloudInit: {{userData: !!binary {SECRET}}}\n",
    f"spec:\n  vcpus: 1\n  memory: 64MiB\n  cloudInit: {{userData: !!int {SECRET}}}\n",
])
def test_no_value_from_under_spec_is_shown_when_its_type_is_wrong(workdir: Path,
                                                                  spec: str) -> None:
    text = "apiVersion: reconciler/v1\nkind: VirtualMachine\nmetadata:\n  name: s\n" + spec
    write_manifest(workdir, "m/s.yaml", text)
    for fmt in ("text", "json"):
        result = run_cli("validate", "--format", fmt, "m")
        assert result.code == 1
        assert SECRET not in result.stdout + result.stderr
        assert "m/s.yaml" in result.stdout
    plan = run_cli("plan", "--connect", TEST_URI, "m")
    assert SECRET not in plan.stdout + plan.stderr


def test_the_kind_of_a_hidden_value_is_still_said(workdir: Path) -> None:
    write_manifest(workdir, "m/s.yaml", (
        "apiVersion: reconciler/v1\nkind: VirtualMachine\nmetadata:\n  name: s\n"
        f"spec: |\n  cloudInit:\n    userData: |\n      password: {SECRET}\n"
        "---\n"
        "apiVersion: reconciler/v1\nkind: VirtualMachine\nmetadata:\n  name: t\n"
        "spec:\n  vcpus: '4'\n  memory: 64MiB\n"))
    assert run_cli("validate", "m").stdout.splitlines() == [
        "m/s.yaml:5:1: spec: expected a mapping, got a string (not shown)",
        "m/s.yaml:15:3: spec.vcpus: expected a whole number, got a string (not shown); remove "
        "the quotes",
    ]


# --- the daemon ------------------------------------------------------------------------------


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    path = tmp_path / "notify.sock"
    messages: list[str] = []
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    running = True

    def read() -> None:
        while running:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield path, messages
    running = False
    reader.join(2)
    sock.close()


def test_the_daemon_serves_and_stops_with_a_fifo_among_the_manifests(
        workdir: Path, notify: tuple[Path, list[str]]) -> None:
    socket_path, messages = notify
    root = workdir / "m"
    write_manifest(root, "a.yaml", vm_manifest("vm-a"))
    os.mkfifo(root / "b.yaml")
    env = {**os.environ, "NOTIFY_SOCKET": str(socket_path)}
    with open(workdir / "daemon.log", "w+") as log:
        proc = subprocess.Popen(
            [RECONCILER, "run", "--connect", TEST_URI, "--state-dir", str(workdir / "state"),
             "--debounce", "0.2", "--interval", "30", "--log-format", "json",
             "--metrics-addr", "off", str(root)],
            stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any("READY=1" in m for m in messages):
                time.sleep(0.1)
            assert any("READY=1" in m for m in messages), log.read()
            assert any("1 manifest problem" in m for m in messages)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- what a file holds: bytes YAML cannot take, and bombs ------------------------------------


@pytest.mark.parametrize(("data", "line", "column", "message"), [
    (b"a: 1\nb: x\x00y\n", 2, 5, "YAML syntax error: the character U+0000 is not allowed in YAML "
                                  "(control characters are not allowed); remove it"),
    ("a: 1\nb: é\x07\n".encode(), 2, 5, "YAML syntax error: the character U+0007 is not allowed "
                                        "in YAML (control characters are not allowed); remove it"),
    (b"a: 1\nb: caf\xe9\n", 2, 7, "not UTF-8 text: byte 0xe9 cannot be decoded; save the file "
                                  "as UTF-8"),
    (b"\xff\xfea\x00:\x00 \x00\x00\xd8", 1, 4, "not UTF-16 text: byte 0x00 cannot be decoded; "
                                               "save the file as UTF-8"),
    (b"vcpus: " + b"9" * 5000 + b"\n", 1, 1, "a number with more than 4300 digits; no field "
                                             "takes one"),
    (b"!!int \n", 1, 1, "a tagged value could not be built (a tag such as !!int or !!binary on "
                        "a value that is not one); remove the tag or fix the value"),
])
def test_bytes_yaml_cannot_take_are_a_problem_at_their_line(
        workdir: Path, data: bytes, line: int, column: int, message: str) -> None:
    (workdir / "m").mkdir()
    (workdir / "m" / "a.yaml").write_bytes(data)
    documents, problems = load_tree(workdir / "m")
    assert documents == []
    assert [(p.line, p.column, p.message) for p in problems] == [(line, column, message)]


def test_many_small_bombs_in_one_file_are_refused_quickly(workdir: Path) -> None:
    # Each document stays under the per-document bound; the file as a whole does not.
    bomb = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
                     + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]"
                        for i in range(1, 4)])  # 12,345 nodes once expanded
    (workdir / "m").mkdir()
    (workdir / "m" / "a.yaml").write_text("".join(f"---\n{bomb}\n" for _ in range(2000)))
    started = time.monotonic()
    documents, problems = load_tree(workdir / "m")
    assert time.monotonic() - started < 10
    assert [p.message.split(":")[0] for p in problems] == [
        "the file is too large once its aliases are expanded"]
    assert len(documents) < 100


def test_a_key_yaml_reads_as_a_boolean_is_a_problem(workdir: Path) -> None:
    write_manifest(workdir, "m/a.yaml", vm_manifest("vm-a").replace(
        "name: vm-a", "name: vm-a\n  labels: {on: x}"))
    assert run_cli("validate", "m").stdout.splitlines() == [
        "m/a.yaml:5:12: metadata.labels[true]: a key must be a string, and YAML reads this one "
        "as the boolean true; quote it"]
