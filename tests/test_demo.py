"""The main command's model choice: the official model when it can be had, else one line and the offline demo."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from sam_widget.demo import demo_setup


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


def test_without_network_one_line_says_so_and_the_offline_demo_opens(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SAM_WIDGET_HOME", str(tmp_path))
    monkeypatch.setenv("SAM_WIDGET_CHECKPOINT_URL", f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.delenv("SAM_WIDGET_MODEL", raising=False)
    demo = demo_setup()
    out, err = capsys.readouterr()
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("No official SAM checkpoint available")
    assert "offline demo" in lines[0]
    assert demo.model == "tiny_shapes" and demo.true_masks is not None
    assert demo.true_masks.shape[1:] == demo.image.shape[:2]  # synthetic image with its truth
    assert list(tmp_path.iterdir()) == []  # nothing half-downloaded left behind
    # the suggested click lies inside the largest true object
    x, y = demo.suggest_point()
    largest = demo.true_masks[int(np.argmax(demo.true_masks.sum(axis=(1, 2))))]
    assert largest[y, x]


def test_unknown_model_names_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="unknown model"):
        demo_setup("vit_q")


def test_no_network_reads_as_such_without_the_raw_os_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SAM_WIDGET_HOME", str(tmp_path))
    monkeypatch.setenv("SAM_WIDGET_CHECKPOINT_URL", "http://sam-widget-test.invalid/")  # never resolves
    demo_setup("vit_b")
    out, err = capsys.readouterr()
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert lines == [
        f"No official SAM checkpoint available (vit_b is not in {tmp_path} and could not be downloaded: "
        "no network (the download host could not be found)); opening the offline demo (synthetic shapes + tiny_shapes model)."
    ]


@pytest.mark.parametrize("model, says", [("tiny_shapes", "Showing the offline demo"), ("random_tiny", "Showing a tiny model with RANDOM weights")])
def test_every_demo_says_what_it_shows_in_one_line(model, says, capsys):
    demo_setup(model)
    out, err = capsys.readouterr()
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(says)
    demo_setup(model, verbose=False)
    assert capsys.readouterr() == ("", "")
