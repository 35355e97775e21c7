"""The CI examples (examples/ci/) do what they say: the commands their jobs run, run here against a
snapshot of a host (tests/gitops/ci/host.snapshot.json), give the golden pull-request comment
(tests/gitops/ci/plan.md) and the exit codes that pass or fail the check. No libvirt."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
FIXTURE = Path(__file__).parent / "ci"
FIXED_DATE = "2026-11-30T12:00:00+00:00"


def _repo(tmp_path: Path) -> Path:
    """A manifest repository as the runner checks it out: the pull request's manifests at a
    commit with a fixed date (so its id is the same on every run), ci/ with the scripts, and
    the host's snapshot fetched beside them."""
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE / "manifests", repo / "manifests")
    (repo / "ci").symlink_to(CI)
    shutil.copy(FIXTURE / "host.snapshot.json", repo / "host.snapshot")
    env = {**os.environ, "GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE,
           "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.net",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.net"}
    for args in (["init", "-q"], ["add", "manifests"], ["commit", "-q", "-m", "pull request"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return repo


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    bin_dir = Path(sys.executable).parent  # the venv's `reconciler`
    base = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    return {**base, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT), "RECONCILER_CACHE_DIR": "", "NO_COLOR": "1", **extra}


def _github_plan_step() -> str:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    steps = workflow["jobs"]["plan"]["steps"]
    return next(s["run"] for s in steps if s.get("id") == "plan")


def _gitlab_plan_line() -> str:
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["reconciler-plan"]
    return next(line for line in job["script"] if "plan.sh" in line)


def test_the_github_job_comments_the_golden_plan_and_fails_on_a_refusal(tmp_path):
    repo = _repo(tmp_path)
    output = tmp_path / "github_output"
    r = subprocess.run(["bash", "-e", "-c", _github_plan_step()], cwd=repo, capture_output=True,
                       text=True, timeout=120,
                       env=_env(tmp_path, GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(output)))
    assert r.returncode == 0, r.stderr  # the step itself passes; the status goes on
    assert output.read_text() == "status=1\n"  # web-03 is blocked: the check fails
    comment = (repo / "plan.md").read_text()
    golden = FIXTURE / "plan.md"
    if os.environ.get("CI_EXAMPLE_REGEN"):
        golden.write_text(comment)
    assert comment == golden.read_text()


def test_the_gitlab_job_runs_the_same_commands_and_exits_as_the_plan_says(tmp_path):
    repo = _repo(tmp_path)
    script = _gitlab_plan_line() + "\necho status=$status\n"
    r = subprocess.run(["sh", "-c", script], cwd=repo, capture_output=True, text=True,
                       timeout=120, env=_env(tmp_path))
    assert "status=1" in r.stdout, r.stdout + r.stderr
    assert (repo / "plan.md").read_text() == (FIXTURE / "plan.md").read_text()


def test_without_refusals_the_check_passes_and_the_comment_says_so(tmp_path):
    repo = _repo(tmp_path)
    web = repo / "manifests" / "web.yaml"
    web.write_text(web.read_text().replace("      pool: fast\n", ""))
    r = subprocess.run(["sh", "ci/plan.sh", "manifests", "host.snapshot", "plan.md"], cwd=repo,
                       capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    comment = (repo / "plan.md").read_text()
    assert "| `+` | `web-03` |" in comment and "| 2 | 2 | 1 | 0 |" in comment
    assert "> [!WARNING]" in comment and "`build-01`" in comment  # the destroy is called out


@pytest.mark.parametrize("github", [True, False])
def test_invalid_manifests_fail_the_check_with_annotations_on_the_lines(tmp_path, github):
    repo = _repo(tmp_path)
    db = repo / "manifests" / "db.yaml"
    db.write_text(db.read_text().replace("  vcpus: 4\n", "  vcpus: four\n"))
    env = _env(tmp_path, **({"GITHUB_ACTIONS": "true"} if github else {}))
    r = subprocess.run(["sh", "ci/plan.sh", "manifests", "host.snapshot", "plan.md"], cwd=repo,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1
    line = next(n for n, text in enumerate(db.read_text().splitlines(), 1) if "vcpus:" in text)
    if github:
        assert (f"::error file=manifests/db.yaml,line={line},col=" in r.stdout), r.stdout
        assert "title=spec.vcpus::" in r.stdout
    else:
        assert f"manifests/db.yaml:{line}:" in r.stdout + r.stderr
    assert "#### Problems in the manifests" in (repo / "plan.md").read_text()


def test_the_plan_header_names_the_commit_and_says_when_the_tree_is_dirty(tmp_path):
    repo = _repo(tmp_path)
    r = subprocess.run(["reconciler", "plan", "--snapshot", "host.snapshot", "manifests"],
                       cwd=repo, capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    last = r.stdout.splitlines()[-1]
    assert "manifests at commit 78ae7aa5aa21" in last and "dirty" not in last, last
    (repo / "manifests" / "extra.yaml").write_text((repo / "manifests" / "cache.yaml")
                                                   .read_text().replace("cache-01", "cache-02"))
    r = subprocess.run(["reconciler", "plan", "--snapshot", "host.snapshot", "manifests",
                        "--format", "json"], cwd=repo, capture_output=True, text=True,
                       timeout=60, env=_env(tmp_path))
    header = json.loads(r.stdout)["header"]
    assert header["commit"].startswith("78ae7aa5aa21") and header["dirty"] is True


@pytest.mark.parametrize("case", ["not a repository", "dubious ownership"])
def test_a_revision_git_cannot_read_is_a_warning_in_the_plan_never_left_out(tmp_path, case):
    repo = _repo(tmp_path)
    if case == "not a repository":
        shutil.rmtree(repo / ".git")
        expected = "is not in a git repository"
    else:
        os.chown(repo, 65534, 65534)  # owned by nobody, read by root: git refuses it
        expected = "dubious ownership"
    r = subprocess.run(["reconciler", "plan", "--snapshot", "host.snapshot", "manifests"],
                       cwd=repo, capture_output=True, text=True, timeout=60,
                       env={**_env(tmp_path), "HOME": str(tmp_path)})
    last = r.stdout.splitlines()[-1]
    assert last.startswith("Made for instance default on hv-01") and "warning:" in last, last
    assert expected in last
    md = subprocess.run(["reconciler", "plan", "--snapshot", "host.snapshot", "manifests",
                         "--format", "markdown"], cwd=repo, capture_output=True, text=True,
                        timeout=60, env={**_env(tmp_path), "HOME": str(tmp_path)}).stdout
    assert expected in md
