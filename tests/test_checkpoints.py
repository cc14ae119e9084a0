"""Checkpoint download, verification and loading, against a real loopback HTTP server.

A tiny random-weight SAM is registered as model type "tiny" and served from 127.0.0.1; the
cache directory and the mirror URL are pointed at it through the environment, exactly as a
user with a mirror would.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import pickle
import socket
import sys
import threading
import types
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from sam_widget.engine.checkpoints import (
    CHECKPOINTS,
    CheckpointError,
    CheckpointSpec,
    cache_home,
    checkpoint_url,
    download_checkpoint,
    infer_model_type,
    load_sam,
    select_device,
    sha256_file,
)
from sam_widget.engine.models import MODEL_CONFIGS, TINY_TEST_CONFIG, build_sam, random_sam

TINY_NAME = "sam_tiny_test_0001.pth"


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    return random_sam(TINY_TEST_CONFIG, seed=7).state_dict()


@pytest.fixture(scope="module")
def tiny_bytes(tiny_state) -> bytes:
    buf = io.BytesIO()
    torch.save(tiny_state, buf)
    return buf.getvalue()


@pytest.fixture
def tiny_spec(monkeypatch, tiny_bytes) -> CheckpointSpec:
    """Register the tiny checkpoint as model type "tiny", with its real sha256 and size."""
    spec = CheckpointSpec(
        model_type="tiny",
        filename=TINY_NAME,
        sha256=hashlib.sha256(tiny_bytes).hexdigest(),
        config=TINY_TEST_CONFIG,
        size=len(tiny_bytes),
    )
    monkeypatch.setitem(CHECKPOINTS, "tiny", spec)
    return spec


@dataclass
class Mirror:
    """What the loopback server serves, and what it was asked for."""

    files: dict[str, bytes]
    mode: str = "ok"  # "ok" | "corrupt" (same length, other bytes) | "truncate" (half, then close)
    requests: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def mirror(tiny_bytes):
    state = Mirror(files={TINY_NAME: tiny_bytes})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            state.requests.append(self.path)
            prefix = "/mirror/"
            body = state.files.get(self.path[len(prefix):]) if self.path.startswith(prefix) else None
            if body is None:
                self.send_error(404, "Not Found")
                return
            if state.mode == "corrupt":
                body = body[::-1]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.mode == "truncate":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/mirror/"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "sam_home"
    monkeypatch.setenv("SAM_WIDGET_HOME", str(path))
    return path


@pytest.fixture
def use_mirror(monkeypatch, mirror, home, tiny_spec) -> Mirror:
    monkeypatch.setenv("SAM_WIDGET_CHECKPOINT_URL", mirror.url)
    return mirror


def _closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mirror/"


def _assert_weights_equal(sam, state: dict[str, torch.Tensor]) -> None:
    loaded = sam.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def _listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


# ------------------------------------------------------------------------------ download


def test_first_load_downloads_with_progress_and_second_load_uses_the_cache(
    use_mirror, home, tiny_bytes, tiny_state, capsys
):
    sam = load_sam("tiny", device="cpu", precision="fp32")

    err = capsys.readouterr().err
    assert use_mirror.url + TINY_NAME in err
    assert "100%" in err  # tqdm's progress bar reached the end
    final = home / TINY_NAME
    assert final.read_bytes() == tiny_bytes
    assert _listing(home) == [TINY_NAME]  # no temporary files left behind
    assert not sam.training
    assert all(p.device.type == "cpu" for p in sam.parameters())
    _assert_weights_equal(sam, tiny_state)
    assert use_mirror.requests == ["/mirror/" + TINY_NAME]

    again = load_sam("tiny", device="cpu", precision="fp32")
    _assert_weights_equal(again, tiny_state)
    assert len(use_mirror.requests) == 1


def test_loaded_model_segments(use_mirror):
    sam = load_sam("tiny", device="cpu")
    size = TINY_TEST_CONFIG.img_size
    image = torch.rand(3, size, size) * 255
    with torch.no_grad():
        out = sam([{"image": image, "original_size": (size, size),
                    "point_coords": torch.tensor([[[40.0, 50.0]]]),
                    "point_labels": torch.tensor([[1]])}], multimask_output=True)
    assert out[0]["masks"].shape == (1, 3, size, size)


def test_download_checkpoint_without_progress_is_silent(use_mirror, tmp_path, tiny_bytes, capsys):
    dest = tmp_path / "elsewhere"
    path = download_checkpoint("tiny", dest_dir=dest, progress=False)
    assert path == dest / TINY_NAME
    assert path.read_bytes() == tiny_bytes
    assert sha256_file(path) == CHECKPOINTS["tiny"].sha256
    assert capsys.readouterr().err == ""


def test_corrupted_download_is_rejected_and_discarded(use_mirror, home, tiny_spec):
    use_mirror.mode = "corrupt"
    with pytest.raises(CheckpointError) as info:
        load_sam("tiny", device="cpu")
    message = str(info.value)
    assert TINY_NAME in message
    assert tiny_spec.sha256 in message
    assert "checkpoint=" in message  # says how to get around it
    assert _listing(home) == []


@pytest.mark.parametrize("size_known", [True, False])
def test_interrupted_download_leaves_no_partial_file(
    use_mirror, home, tiny_spec, monkeypatch, size_known
):
    if not size_known:
        monkeypatch.setitem(CHECKPOINTS, "tiny", CheckpointSpec(
            "tiny", tiny_spec.filename, tiny_spec.sha256, tiny_spec.config, size=None))
    use_mirror.mode = "truncate"
    with pytest.raises(CheckpointError) as info:
        download_checkpoint("tiny", progress=False)
    message = str(info.value)
    assert TINY_NAME in message
    if size_known:
        assert "interrupted" in message
        assert f"received {tiny_spec.size // 2} bytes" in message
    else:
        assert tiny_spec.sha256 in message
    assert _listing(home) == []


def test_offline_download_fails_with_a_fix(monkeypatch, home, tiny_spec):
    url = _closed_port_url()
    monkeypatch.setenv("SAM_WIDGET_CHECKPOINT_URL", url)
    with pytest.raises(CheckpointError) as info:
        load_sam("tiny", device="cpu")
    message = str(info.value)
    assert url + TINY_NAME in message
    assert str(home / TINY_NAME) in message
    assert "checkpoint=" in message and "SAM_WIDGET_CHECKPOINT_URL" in message
    assert _listing(home) == []


def test_default_model_is_vit_b_and_a_missing_file_reports_http_status(use_mirror, home):
    # No model type, no checkpoint: vit_b is fetched; this mirror does not have it.
    with pytest.raises(CheckpointError, match="HTTP 404") as info:
        load_sam(device="cpu", progress=False)
    assert "sam_vit_b_01ec64.pth" in str(info.value)
    assert use_mirror.requests == ["/mirror/sam_vit_b_01ec64.pth"]
    assert _listing(home) == []


def test_urls_and_cache_dir_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SAM_WIDGET_CHECKPOINT_URL", raising=False)
    assert checkpoint_url("vit_h") == (
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"
    )
    monkeypatch.setenv("SAM_WIDGET_CHECKPOINT_URL", "http://127.0.0.1:9/m")
    assert checkpoint_url("vit_l") == "http://127.0.0.1:9/m/sam_vit_l_0b3195.pth"

    monkeypatch.delenv("SAM_WIDGET_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_home() == tmp_path / ".cache" / "sam_widget"
    monkeypatch.setenv("SAM_WIDGET_HOME", str(tmp_path / "h"))
    assert cache_home() == tmp_path / "h"


def test_official_registry_facts():
    assert {k: (s.filename, s.sha256) for k, s in CHECKPOINTS.items()} == {
        "vit_b": ("sam_vit_b_01ec64.pth",
                  "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
        "vit_l": ("sam_vit_l_0b3195.pth",
                  "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        "vit_h": ("sam_vit_h_4b8939.pth",
                  "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    }
    assert CHECKPOINTS["vit_b"].size == 375_042_383
    assert all(CHECKPOINTS[k].config == MODEL_CONFIGS[k] for k in MODEL_CONFIGS)


# ---------------------------------------------------------------------------- local files


@pytest.fixture
def tiny_file(tmp_path, tiny_bytes) -> Path:
    path = tmp_path / "my_tiny.pth"
    path.write_bytes(tiny_bytes)
    return path


def test_local_checkpoint_with_inferred_type(tiny_spec, tiny_file, tiny_state, monkeypatch):
    monkeypatch.setenv("SAM_WIDGET_CHECKPOINT_URL", _closed_port_url())  # must not download
    sam = load_sam(checkpoint=tiny_file, device="cpu", precision="fp32")
    _assert_weights_equal(sam, tiny_state)
    sam = load_sam("tiny", checkpoint=str(tiny_file), device=torch.device("cpu"), precision="fp32")
    _assert_weights_equal(sam, tiny_state)


def test_wrapped_and_prefixed_state_dicts_load(tiny_spec, tmp_path, tiny_state):
    path = tmp_path / "trainer_output.pth"
    torch.save({"model": {"module." + k: v for k, v in tiny_state.items()}, "epoch": 3}, path)
    _assert_weights_equal(load_sam(checkpoint=path, device="cpu", precision="fp32"), tiny_state)


def test_truncated_local_file(tiny_spec, tmp_path, tiny_bytes):
    path = tmp_path / "half.pth"
    path.write_bytes(tiny_bytes[: len(tiny_bytes) // 2])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_sam("tiny", checkpoint=path, device="cpu")
    assert str(path) in str(info.value)


def test_text_file_is_not_a_checkpoint(tiny_spec, tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not the weights you are looking for\n")
    with pytest.raises(CheckpointError, match="not a checkpoint") as info:
        load_sam(checkpoint=path, device="cpu")
    assert str(path) in str(info.value)


def test_pytorch_file_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a model state dict"):
        load_sam(checkpoint=path, device="cpu")


def test_directory_and_missing_paths(tmp_path):
    with pytest.raises(CheckpointError, match="not a regular file") as info:
        load_sam(checkpoint=tmp_path, device="cpu")
    assert str(tmp_path) in str(info.value)
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        load_sam("vit_b", checkpoint=missing, device="cpu")
    assert str(missing) in str(info.value)


def test_file_for_another_model_type(tiny_spec, tiny_file):
    with pytest.raises(CheckpointError) as info:
        load_sam("vit_b", checkpoint=tiny_file, device="cpu")
    message = str(info.value)
    assert str(tiny_file) in message and "'vit_b'" in message
    assert "wrong shape" in message
    assert "model_type='tiny'" in message  # points at the model it actually holds


def _save_without(tmp_path, state, drop_prefix=None, extra=None) -> Path:
    state = {k: v for k, v in state.items() if drop_prefix is None or not k.startswith(drop_prefix)}
    state.update(extra or {})
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("model_type", ["tiny", None])
def test_incomplete_checkpoint_is_called_incomplete_not_a_wrong_model_type(tiny_spec, tmp_path, tiny_state, model_type):
    """The encoder fits the model type asked for, so "pass model_type='tiny'" would be no help."""
    path = _save_without(tmp_path, tiny_state, drop_prefix="mask_decoder.iou_prediction_head")
    with pytest.raises(CheckpointError) as info:
        load_sam(model_type, checkpoint=path, device="cpu")
    message = str(info.value)
    assert str(path) in message and "missing keys" in message
    assert "incomplete" in message and "mask_decoder" in message
    assert "pass model_type=" not in message


def test_checkpoint_of_another_family_with_a_sam_encoder_says_so(tiny_spec, tmp_path, tiny_state):
    path = _save_without(tmp_path, tiny_state, extra={"mask_decoder.hf_token.weight": torch.zeros(1, 32)})
    with pytest.raises(CheckpointError) as info:
        load_sam("tiny", checkpoint=path, device="cpu")
    message = str(info.value)
    assert "unexpected keys" in message and "another model family" in message
    assert "pass model_type=" not in message


def _mock_native_bf16(monkeypatch, native: bool) -> None:
    from sam_widget.engine import precision

    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: (native, "mocked"))


def test_auto_precision_converts_the_encoder_once_where_bf16_is_native(monkeypatch, tiny_spec, tiny_file, tiny_state):
    monkeypatch.delenv("SAM_WIDGET_PRECISION", raising=False)  # the hardware decides "auto" here
    from sam_widget import Segmenter
    from sam_widget.engine.fast import encoder_precision

    _mock_native_bf16(monkeypatch, True)
    sam = load_sam(checkpoint=tiny_file, device="cpu")  # precision="auto"
    assert encoder_precision(sam.image_encoder) == "bf16"
    loaded = sam.state_dict()
    for key, value in tiny_state.items():  # every tensor is the file's, the blocks' linears rounded to bf16
        converted = key.startswith("image_encoder.blocks.") and any(f".{k}." in key for k in ("qkv", "proj", "lin1", "lin2"))
        expected = value.to(torch.bfloat16) if converted else value
        assert loaded[key].dtype == expected.dtype and torch.equal(loaded[key], expected), key
    assert Segmenter(sam).precision == "bf16"
    with pytest.raises(ValueError, match="precision='fp32'"):
        Segmenter(sam, exact=True)
    # the same file on hardware without native bf16: the file's weights, untouched
    _mock_native_bf16(monkeypatch, False)
    _assert_weights_equal(load_sam(checkpoint=tiny_file, device="cpu"), tiny_state)


def test_from_pretrained_exact_loads_fp32_even_where_auto_would_be_bf16(monkeypatch, tiny_spec, tiny_file, tiny_state):
    monkeypatch.delenv("SAM_WIDGET_PRECISION", raising=False)  # the hardware decides "auto" here
    from sam_widget import Segmenter

    _mock_native_bf16(monkeypatch, True)
    seg = Segmenter.from_pretrained(None, checkpoint=tiny_file, device="cpu", exact=True)
    assert seg.exact and seg.precision == "fp32"
    _assert_weights_equal(seg.sam, tiny_state)
    seg = Segmenter.from_pretrained(None, checkpoint=tiny_file, device="cpu")
    assert seg.precision == "bf16" and not seg.exact


def test_unknown_architecture_cannot_be_inferred(tiny_file):
    # "tiny" is not registered here, so nothing fits.
    with pytest.raises(CheckpointError, match="Cannot tell which SAM model") as info:
        load_sam(checkpoint=tiny_file, device="cpu")
    assert "vit_b" in str(info.value)


def test_corrupt_file_in_cache_says_to_delete_it(home, tiny_spec):
    home.mkdir()
    (home / TINY_NAME).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="delete"):
        load_sam("tiny", device="cpu")


# ------------------------------------------------------------------------------ inference


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_infer_model_type_of_official_architectures(model_type):
    with torch.device("meta"):  # shapes only, no memory
        state = build_sam(model_type).state_dict()
    assert infer_model_type(state) == model_type


def test_infer_model_type_rejects_non_sam_input():
    with pytest.raises(ValueError, match="Not a SAM state dict"):
        infer_model_type({"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(TypeError):
        infer_model_type([("a", torch.zeros(1))])


# --------------------------------------------------------------------------- weights_only


class _Payload:
    """Unpickling this creates a directory: a harmless stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("fmt", ["torch.save", "plain pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, fmt):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"image_encoder.patch_embed.proj.weight": torch.zeros(1), "x": _Payload(marker)}
    if fmt == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))

    with pytest.raises(CheckpointError, match="Refused") as info:
        load_sam(checkpoint=path, device="cpu")
    assert str(path) in str(info.value)
    assert not marker.exists()

    # The payload is live: an unsafe load would have run it.
    if fmt == "plain pickle":
        pickle.loads(path.read_bytes())
        assert marker.is_dir()


# --------------------------------------------------------------------------- arguments


def test_argument_validation(tiny_file):
    with pytest.raises(ValueError, match="vit_b, vit_l, vit_h, tiny_shapes"):
        load_sam("vit_x")
    with pytest.raises(TypeError, match="model_type"):
        load_sam(3)
    with pytest.raises(TypeError, match="checkpoint"):
        load_sam("vit_b", checkpoint=3)
    with pytest.raises(TypeError, match="device"):
        load_sam("vit_b", checkpoint=tiny_file, device=0)
    with pytest.raises(ValueError, match="takes no checkpoint"):
        load_sam("tiny_shapes", checkpoint=tiny_file, device="cpu")
    with pytest.raises(ValueError, match="no checkpoint to download"):
        download_checkpoint("tiny_shapes")


# ----------------------------------------------------------------------------- tiny_shapes


def test_tiny_shapes_missing_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sam_widget.engine.tiny", None)  # as if not shipped
    with pytest.raises(CheckpointError, match="sam_widget.engine.tiny"):
        load_sam("tiny_shapes", device="cpu")


def test_tiny_shapes_uses_the_shipped_loader(monkeypatch, tiny_state):
    calls = []

    def load_tiny_shapes(device):
        calls.append(device)
        sam = random_sam(TINY_TEST_CONFIG, seed=7)
        sam.train()
        return sam

    fake = types.ModuleType("sam_widget.engine.tiny")
    fake.load_tiny_shapes = load_tiny_shapes
    monkeypatch.setitem(sys.modules, "sam_widget.engine.tiny", fake)
    monkeypatch.setenv("SAM_WIDGET_CHECKPOINT_URL", _closed_port_url())
    sam = load_sam("tiny_shapes", device="cpu", precision="fp32")
    assert calls == [torch.device("cpu")]
    assert not sam.training
    _assert_weights_equal(sam, tiny_state)


def test_real_tiny_shapes_module_if_shipped():
    try:
        importlib.import_module("sam_widget.engine.tiny")
    except ModuleNotFoundError:
        pytest.skip("sam_widget.engine.tiny not written yet")
    sam = load_sam("tiny_shapes", device="cpu")
    assert not sam.training


# ------------------------------------------------------------------------------ devices


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_falls_back_to_cpu(no_accelerators):
    assert select_device() == torch.device("cpu")
    assert select_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("mps")


def test_explicit_devices(no_accelerators, monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available.*device='cpu'"):
        select_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device(torch.device("cuda", 1))
    with pytest.raises(ValueError, match="MPS is not available"):
        select_device("mps")
    with pytest.raises(ValueError, match="Invalid device"):
        select_device("gpu0")
    with pytest.raises(TypeError):
        select_device(1)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        select_device("cuda:1")


def test_unavailable_device_fails_before_downloading(no_accelerators, use_mirror, home):
    with pytest.raises(ValueError, match="CUDA"):
        load_sam("tiny", device="cuda")
    assert use_mirror.requests == []
    assert _listing(home) == []


def test_tiny_shapes_with_its_weights_missing_is_a_checkpoint_error(monkeypatch, tmp_path):
    import sam_widget.engine.tiny as tiny

    monkeypatch.setattr(tiny, "TINY_SHAPES_WEIGHTS", tmp_path / "gone.pt")
    with pytest.raises(CheckpointError, match="tiny_shapes.*gone.pt.*Reinstall"):
        load_sam("tiny_shapes")
