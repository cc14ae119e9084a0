"""scripts/setup.sh installs only when something changed (and says nothing when nothing did).

The script runs for real, in a temporary copy of the repo, with a stand-in ``.venv/bin/python``
that logs its calls: pip and the import check are faked, everything else (the stamp's hash)
runs on the real Python. Nothing touches the repo's own .venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "{log}"
case "$1 $2" in
  "-m pip") [ -f "{state}/pip_fails" ] && exit 1; exit 0 ;;
  "-m venv") mkdir -p "$3/bin" && cp "{fake}" "$3/bin/python" && exit 0 ;;
esac
case "$*" in
  *"import sam_widget"*|*"find_spec"*) [ -f "{state}/imports_broken" ] && exit 1; exit 0 ;;
esac
exec "{real}" "$@"
"""


@pytest.fixture
def repo(tmp_path: Path):
    """A copy of the repo's setup inputs, with a fake interpreter for both python3 and .venv."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", root / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    state = tmp_path / "state"
    state.mkdir()
    log = state / "calls.log"
    fake = state / "python"
    fake.write_text(FAKE_PYTHON.format(log=log, state=state, fake=fake, real=sys.executable))
    fake.chmod(0o755)

    def run() -> tuple[list[str], str]:
        log.write_text("")
        env = {**os.environ, "PYTHON": str(fake)}
        p = subprocess.run(["bash", "scripts/setup.sh"], cwd=root, env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        return log.read_text().splitlines(), p.stdout + p.stderr

    return root, state, run


def pip_installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("-m pip install") and "-e" in c.split()]


def test_a_fresh_clone_makes_the_venv_and_installs_once_then_never_again(repo):
    root, _, run = repo
    calls, out = run()
    assert calls[0].startswith("-m venv"), calls  # no .venv yet: made with $PYTHON
    assert pip_installs(calls) == ["-m pip install -q -e .[test]"]
    assert (root / ".venv" / ".sam_widget_setup").is_file()
    assert out.strip() == "setup: ready (.venv)"

    calls, out = run()  # nothing changed
    assert not any(c.startswith("-m pip") for c in calls), calls  # not even pip's self-upgrade
    assert not any(c.startswith("-m venv") for c in calls)
    assert out.strip() == "setup: ready (.venv)"


def test_a_changed_pyproject_or_a_missing_venv_installs_again(repo):
    root, _, run = repo
    run()
    py = root / "pyproject.toml"
    py.write_text(py.read_text().replace('"tqdm>=4.60"', '"tqdm>=4.61"'))
    assert pip_installs(run()[0])
    assert not pip_installs(run()[0])

    shutil.rmtree(root / ".venv")
    calls, _ = run()
    assert calls[0].startswith("-m venv") and pip_installs(calls)


def test_a_broken_environment_is_repaired_even_with_a_valid_stamp(repo):
    root, state, run = repo
    run()
    (state / "imports_broken").touch()  # e.g. a package removed by hand
    p = subprocess.run(["bash", "scripts/setup.sh"], cwd=root, env={**os.environ}, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "the Python install failed" in p.stdout  # pip could not fix it here
    (state / "imports_broken").unlink()
    assert pip_installs(run()[0])  # the stamp was dropped, so the next run installs
    assert not pip_installs(run()[0])


def test_a_failed_pip_run_leaves_no_stamp_so_the_next_run_tries_again(repo):
    root, state, run = repo
    (state / "pip_fails").touch()
    calls, out = run()  # the imports still work (an older install): usable, with a note
    assert pip_installs(calls) and "pip install failed" in out
    assert not (root / ".venv" / ".sam_widget_setup").exists()
    (state / "pip_fails").unlink()
    assert pip_installs(run()[0])
    assert not pip_installs(run()[0])


def test_pyproject_metadata_needs_no_deprecated_forms_and_does_not_cap_torch():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"  # an SPDX string, not a TOML table
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in meta["build-system"]["requires"])
    deps = {d.split(">")[0].split("<")[0].split("=")[0]: d for d in meta["project"]["dependencies"]}
    for name in ("torch", "torchvision"):
        assert "<" not in deps[name], f"{deps[name]}: no upper bound without a known breakage"
