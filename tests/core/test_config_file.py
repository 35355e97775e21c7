"""The host's config file is read like a manifest: only a regular file, within a byte limit; a
FIFO, a folder or a device there is refused in one line, never waited on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _validate(config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    m = tmp_path / "m"
    m.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", "from reconciler.shells.cli import main; main()", "validate",
         "--config", str(config), str(m)],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("kind", ["fifo", "folder", "device", "too large"])
def test_a_config_that_is_not_a_small_regular_file_is_refused_at_once(tmp_path, kind):
    config = tmp_path / "config.yaml"
    if kind == "fifo":
        os.mkfifo(config)
    elif kind == "folder":
        config.mkdir()
    elif kind == "device":
        config.symlink_to("/dev/zero")
    else:
        config.write_text("# padding\n" * 200_000)
    r = _validate(config, tmp_path)  # the timeout fails the test if it hangs
    assert r.returncode == 1, r.stderr
    assert f"{config}: cannot read config" in r.stderr and "Traceback" not in r.stderr
