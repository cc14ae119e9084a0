"""scripts/demo.sh opens fresh copies of the notebooks outside the repository, clean on every launch.

demo.sh runs for real in a temporary copy of the repo; only the two programs it hands over to
are stand-ins: ``.venv/bin/python`` (pip and the import check faked, everything else on the
real Python with this checkout's ``sam_widget``) and ``.venv/bin/jupyter`` (records how it was
started, then exits).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
case "$1 $2" in
  "-m pip") exit 0 ;;
esac
case "$*" in
  *"import sam_widget, torch"*|*"find_spec"*) exit 0 ;;
esac
PYTHONPATH="{src}" exec "{real}" "$@"
"""

FAKE_JUPYTER = """#!/usr/bin/env bash
{{ echo "cwd=$PWD"; echo "workspaces=$JUPYTERLAB_WORKSPACES_DIR"; printf 'arg=%s\\n' "$@"; }} > "{log}"
"""

WIDGET_VIEW = {
    "output_type": "display_data",
    "metadata": {},
    "data": {
        "text/plain": "SamWidget(...)",
        "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0, "model_id": "0123abcd"},
    },
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def demo(tmp_path: Path):
    repo = tmp_path / "repo"
    for rel in ("scripts/demo.sh", "scripts/setup.sh", "pyproject.toml", "notebooks/quickstart.ipynb", "notebooks/teaching.ipynb",
                "notebooks/analysis.ipynb"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, repo / rel)
    (repo / ".venv" / "bin").mkdir(parents=True)
    log = tmp_path / "jupyter.log"
    for name, text in (("python", FAKE_PYTHON.format(src=ROOT, real=sys.executable)), ("jupyter", FAKE_JUPYTER.format(log=log))):
        (repo / ".venv" / "bin" / name).write_text(text)
        (repo / ".venv" / "bin" / name).chmod(0o755)
    tracked = {p: digest(p) for p in (repo / "notebooks").iterdir()}
    work = tmp_path / "home" / "sam_widget_work"

    def launch(workdir: Path | None = work, expect_rc: int = 0) -> subprocess.CompletedProcess:
        log.unlink(missing_ok=True)
        env = {**os.environ, "HOME": str(tmp_path / "home")}
        env.pop("SAM_WIDGET_WORKDIR", None)
        if workdir is not None and workdir != work:
            env["SAM_WIDGET_WORKDIR"] = str(workdir)
        p = subprocess.run(["bash", "scripts/demo.sh", "--no-browser"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == expect_rc, p.stdout + p.stderr
        return p

    def started() -> dict:
        lines = log.read_text().splitlines()
        return {
            "cwd": lines[0].split("=", 1)[1],
            "workspaces": lines[1].split("=", 1)[1],
            "args": [ln.split("=", 1)[1] for ln in lines[2:]],
        }

    return repo, work, tracked, launch, started, log


def nb(path: Path) -> dict:
    return json.loads(path.read_text())


def test_demo_opens_a_fresh_copy_outside_the_repo_in_a_clean_jupyterlab(demo):
    repo, work, tracked, launch, started, _ = demo
    launch()  # default working folder: ~/sam_widget_work
    s = started()
    assert s["cwd"] == str(work)
    assert f"--ServerApp.root_dir={work}" in s["args"] and "quickstart.ipynb" in s["args"]
    assert "--no-browser" in s["args"]  # extra arguments reach jupyter lab
    assert ("--allow-root" in s["args"]) == (os.geteuid() == 0)  # JupyterLab refuses root without it
    assert s["workspaces"] == str(work / ".jupyter" / "workspaces")
    for name in ("quickstart.ipynb", "teaching.ipynb", "analysis.ipynb"):
        copy = nb(work / name)
        src = nb(repo / "notebooks" / name)
        assert [c["source"] for c in copy["cells"]] == [c["source"] for c in src["cells"]]
        assert all(c.get("outputs", []) == [] for c in copy["cells"])
        assert "widgets" not in copy["metadata"]
    assert {p: digest(p) for p in (repo / "notebooks").iterdir()} == tracked  # the repo is untouched


def test_a_relaunch_after_a_session_starts_clean(demo):
    repo, work, tracked, launch, started, _ = demo
    launch()
    # What a JupyterLab session leaves behind: autosaved outputs with a widget view, saved
    # widget state, a checkpoint of that, and a workspace that reopens the notebook.
    q = work / "quickstart.ipynb"
    used = nb(q)
    used["cells"][1]["outputs"] = [WIDGET_VIEW]
    used["cells"][1]["execution_count"] = 1
    used["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2, "version_minor": 0}}
    q.write_text(json.dumps(used))
    (work / ".ipynb_checkpoints").mkdir()
    (work / ".ipynb_checkpoints" / "quickstart-checkpoint.ipynb").write_text(json.dumps(used))
    (work / ".jupyter" / "workspaces" / "default-37a8.jupyterlab-workspace").write_text("{}")
    mine = work / "my_analysis.ipynb"
    mine.write_text(json.dumps(used))  # the user's own notebook in the folder: left alone

    p = launch()
    again = nb(q)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in again["cells"] if c["cell_type"] == "code")
    assert "widgets" not in again["metadata"]
    assert not (work / ".ipynb_checkpoints" / "quickstart-checkpoint.ipynb").exists()
    assert list((work / ".jupyter" / "workspaces").iterdir()) == []
    assert nb(mine) == used
    assert not list(work.glob("*-edited-*"))  # only outputs had changed: nothing to keep
    assert "edited" not in p.stderr
    assert {p: digest(p) for p in (repo / "notebooks").iterdir()} == tracked


def test_an_edited_copy_is_kept_under_a_new_name(demo):
    _, work, _, launch, _, _ = demo
    launch()
    q = work / "quickstart.ipynb"
    edited = nb(q)
    edited["cells"][1]["source"] = "w = 'my own experiment'"
    q.write_text(json.dumps(edited))
    p = launch()
    kept = list(work.glob("quickstart-edited-*.ipynb"))
    assert len(kept) == 1 and nb(kept[0]) == edited
    assert f"kept as {kept[0]}" in p.stderr
    assert nb(q)["cells"][1]["source"] != "w = 'my own experiment'"  # the demo copy is fresh again


def test_a_working_folder_inside_the_repo_is_refused(demo):
    repo, _, tracked, launch, _, log = demo
    p = launch(repo / "notebooks", expect_rc=1)
    assert "inside the repository" in p.stderr and "Traceback" not in p.stderr
    assert not log.exists()  # JupyterLab was not started
    assert {p: digest(p) for p in (repo / "notebooks").iterdir()} == tracked
