"""Start-up: each command imports what it uses. `--version` and `--help` import click and little
else; `validate` runs where libvirt-python is not installed (a CI runner) and imports none of the
daemon's, the executor's or the hypervisor's libraries; an apply with nothing to do imports no
executor and no structlog. Checked in a fresh process, by the modules it holds at the end (the
time it takes is bench/startup_bench.py's figure, never a test's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs the CLI as the console script does, with some modules unimportable (``sys.modules[name] =
# None``: an import of them raises ImportError), then prints the exit status and the modules
# loaded, as the last line of stdout.
SCRIPT = """\
import json, sys
blocked, args = json.loads(sys.argv[1]), sys.argv[2:]
for name in blocked:
    sys.modules[name] = None
from reconciler.shells.cli import main
try:
    main(args, prog_name="reconciler")
    code = 0
except SystemExit as exc:
    code = exc.code
print()
print(json.dumps({"code": code,
                  "modules": sorted(m for m, v in sys.modules.items() if v is not None)}))
"""

# Not for a command that does not read libvirt, apply or log.
HEAVY = ("libvirt", "lxml", "structlog", "prometheus_client", "watchdog", "pycdlib", "rich",
         "reconciler.apply", "reconciler.adapters.libvirt", "reconciler.shells.daemon")
# Nor, besides, for `--version` and `--help`: the manifests' and the pipeline's libraries.
MANIFESTS = ("yaml", "jsonschema", "jsonschema_rs", "reconciler.pipeline",
             "reconciler.adapters", "reconciler.core.plan")


def run(*args: str, blocked: tuple[str, ...] = (),
        env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    """(exit status, modules loaded, output) of the CLI run with ``args`` in a fresh process
    (``env``: variables besides the environment's)."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(blocked), *args], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    output, _, last = r.stdout.rstrip("\n").rpartition("\n")
    doc = json.loads(last)
    return doc["code"], doc["modules"], output + r.stderr


def empty_config(folder: Path) -> str:
    config = folder / "config.yaml"
    config.write_text("# every setting at its default\n")
    return str(config)


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that are one of ``names`` or inside one of them."""
    return [m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names)]


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["apply", "--help"]])
def test_version_and_help_import_click_and_little_else(args: list[str]) -> None:
    code, modules, output = run(*args, blocked=("libvirt",))
    assert code == 0, output
    assert "reconciler" in output
    assert loaded(modules, HEAVY + MANIFESTS) == []


def test_validate_needs_no_libvirt_and_imports_no_heavy_library(tmp_path: Path) -> None:
    code, modules, output = run("validate", "--config", empty_config(tmp_path),
                                str(ROOT / "manifests"),
                                blocked=("libvirt",))
    assert code == 0, output
    assert "valid." in output
    assert loaded(modules, HEAVY) == []


def test_validate_of_invalid_manifests_imports_no_heavy_library(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "bad.yaml").write_text("apiVersion: reconciler/v1\nkind: VirtualMachine\n"
                                       "metadata: {name: web-01}\nspec: {vcpus: 1, memory: 2GB}\n")
    code, modules, output = run("validate", "--config", empty_config(tmp_path), str(folder),
                                blocked=("libvirt",))
    assert code == 1 and "2GB" in output, output
    assert loaded(modules, HEAVY) == []


def test_an_apply_with_nothing_to_do_imports_no_executor_and_no_structlog(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    code, modules, output = run("apply", "--yes", "--connect", "test:///default",
                                "--config", empty_config(tmp_path),
                                "--state-dir", str(tmp_path / "state"), str(folder))
    assert code == 0, output
    assert "No changes" in output
    assert "reconciler.adapters.libvirt" in modules  # it did read the host
    assert loaded(modules, ("structlog", "rich", "reconciler.apply", "tempfile")) == []
    assert (tmp_path / "state" / "status").is_dir()  # and wrote its state


# What the steady state (nothing to do, everything read before) of one host never loads: the
# planner, the XML parsers and lxml (domains, networks and pools come parsed from the cache),
# the fleet's modules (no Host manifest), targeting (no --target), and the executor.
STEADY = ("lxml", "reconciler.core.xml", "reconciler.core.planner", "reconciler.core.fleet",
          "reconciler.core.placement", "reconciler.core.model.host", "reconciler.core.moves",
          "reconciler.core.targeting", "reconciler.core.validate.crossdoc", "reconciler.apply",
          "structlog", "rich", "yaml", "jsonschema", "jsonschema_rs",
          "concurrent.futures", "logging")  # (a host of one read batch: no reader threads)


def test_an_apply_in_the_steady_state_loads_no_parser_planner_or_fleet(tmp_path: Path) -> None:
    """The second no-op apply of two running VMs on their network (the first one fills the
    cache) loads none of ``STEADY``; bench/startup_bench.py times it."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    for name in ("steady-01", "steady-02"):
        (folder / f"{name}.yaml").write_text(
            "apiVersion: reconciler/v1\nkind: VirtualMachine\n"
            f"metadata: {{name: {name}}}\n"
            "spec: {vcpus: 1, memory: 64MiB, state: running,\n"
            "       networks: [{network: default}]}\n")
    config, node = empty_config(tmp_path), tmp_path / "node.xml"
    env = {"RECONCILER_CACHE_DIR": str(tmp_path / "cache"),
           "XDG_STATE_HOME": str(tmp_path / "state-home")}
    # bench/startup_bench.py's own setup: applied once on test:///default (whose state lives
    # as long as its connection), then the domains written into a copy of the test driver's node
    # file: a host that already runs them
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from startup_bench import TEST_SETUP
    finally:
        sys.path.remove(str(ROOT / "bench"))
    subprocess.run([sys.executable, "-c", TEST_SETUP, str(ROOT / "examples" / "test-node.xml"),
                    str(node), str(folder), config, str(tmp_path / "setup")], check=True,
                   env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                   timeout=60)
    args = ("apply", "--yes", "--connect", f"test://{node}", "--config", config,
            "--state-dir", str(tmp_path / "state"), str(folder))
    code, first, output = run(*args, env=env)
    assert code == 0 and "No changes" in output, output
    assert "lxml" in first  # the first one parsed what it read
    code, modules, output = run(*args, env=env)
    assert code == 0 and "No changes" in output, output
    assert "reconciler.adapters.libvirt" in modules  # it did read the host
    assert loaded(modules, STEADY) == [], loaded(modules, STEADY)


def test_the_commands_imported_when_used_are_those_their_modules_define() -> None:
    from reconciler.shells import cli, commands, gitops_cli

    defined = {c.name: c for c in (*commands.COMMANDS, *gitops_cli.COMMANDS)}
    assert set(cli.ELSEWHERE) == set(defined)
    for name, command in defined.items():
        assert cli.main.commands[name] is command
    assert sorted(cli.main.commands) == sorted([*defined, "validate", "plan", "apply"])


def test_apply_sets_its_logging_up_when_it_first_logs(tmp_path: Path) -> None:
    """structlog is imported and configured at apply's first record (``adapters.lazylog``):
    with -v and --log-format json, each action's record is a JSON line, at info level."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "vm.yaml").write_text("apiVersion: reconciler/v1\nkind: VirtualMachine\n"
                                    "metadata: {name: lazylog-01}\n"
                                    "spec: {vcpus: 1, memory: 64MiB, state: stopped,\n"
                                    "       disks: [{name: root, size: 16MiB}]}\n")
    # a test host whose `default` pool holds a retained volume of the VM's disk: apply takes it
    # up, and says so at info level
    node = tmp_path / "node.xml"
    node.write_text((Path(__file__).parents[2] / "examples" / "test-node.xml").read_text()
                    .replace("    <source/>", "    <source/>\n    <volume><name>lazylog-01-root"
                             "</name><capacity unit='MiB'>16</capacity>"
                             "<target><format type='qcow2'/></target></volume>"))
    code, modules, output = run("apply", "--yes", "-v", "--log-format", "json",
                                "--connect", f"test://{node}", "--config",
                                empty_config(tmp_path), "--state-dir", str(tmp_path / "state"),
                                str(folder))
    assert code == 0, output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    # an info record of apply's (each action's own result is printed, not logged)
    assert {"event": "reusing an existing volume", "level": "info",
            "vm": "lazylog-01"}.items() <= records[-1].items(), output
    assert "structlog" in modules


def _git(folder: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}
    subprocess.run(["git", "-C", str(folder), *args], env=env, check=True, capture_output=True)


def test_git_asked_ahead_answers_as_revision_does(tmp_path: Path) -> None:
    """apply starts `git status` before it reads the host and reads its answer after
    (``git.Asked``): the same answer as ``git.revision``, clean, dirty or no repository."""
    from reconciler.adapters import git

    assert git.Asked(tmp_path).revision() == git.revision(tmp_path)
    assert "not in a git repository" in (git.revision(tmp_path).problem or "")
    (tmp_path / "vm.yaml").write_text("a: 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "one")
    with git.Asked(tmp_path) as asked:
        clean = asked.revision()
    assert clean == git.revision(tmp_path) and clean.commit and not clean.dirty
    (tmp_path / "vm.yaml").write_text("a: 2\n")
    dirty = git.Asked(tmp_path).revision()
    assert dirty.commit == clean.commit and dirty.dirty
    unread = git.Asked(tmp_path)  # never waited for: ended, not left behind
    unread.close()
    assert unread._process is not None and unread._process.returncode is not None
