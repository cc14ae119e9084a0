"""Installing the fast encoder on a model: :func:`accelerate`, :func:`deaccelerate`, the
:class:`AccelerationReport`, optional ``torch.compile`` and its on-disk cache.

Split out of :mod:`sam_widget.engine.fast` (the forward-pass kernels), which re-exports
every name here; see that module's docstring for the numerics and the measurements.
"""

from __future__ import annotations

import os
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from segment_anything.modeling import Sam
from segment_anything.modeling.image_encoder import (
    Attention,
    Block,
    ImageEncoderViT,
)

from .fast import (
    _PRECISIONS,
    _has_converted_linears,
    convert_linear_weights,
    fast_encoder_forward,
)

__all__ = [
    "AccelerationReport",
    "AcceleratedImageEncoderViT",
    "accelerate",
    "deaccelerate",
    "is_accelerated",
    "encoder_precision",
    "run_encoder",
    "compile_cache_dir",
]


# ----------------------------------------------------------------------------- patching
@dataclass
class AccelerationReport:
    """What :func:`accelerate` did. ``undo()`` restores the original encoder.

    Attributes:
      accelerated: the fast forward is installed (False if the encoder is not a plain
        segment_anything ``ImageEncoderViT``; ``reason`` says why).
      fast_blocks / total_blocks: transformer blocks that take the fast path.
      compile: the resolved compile decision (False, or True when a ``torch.compile``d
        forward is installed; the actual compilation happens on the first call).
      compile_error: why compilation was not possible (then the eager fast path runs).
      precision: "fp32" or "bf16", as resolved (bf16: the linear weights were converted).
      device: the encoder's device when accelerated.
      cache_dir: the on-disk compile cache directory (only when compiling).
      notes: human-readable remarks (warnings that were issued, decisions taken).
    """

    accelerated: bool
    fast_blocks: int = 0
    total_blocks: int = 0
    compile: bool = False
    compile_error: str | None = None
    precision: str = "fp32"
    device: str = "cpu"
    cache_dir: Path | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    _sam_ref: Any = field(default=None, repr=False, compare=False)

    def undo(self) -> bool:
        """Restore the original encoder forward (see :func:`deaccelerate`)."""
        sam = self._sam_ref() if self._sam_ref is not None else None
        return deaccelerate(sam) if sam is not None else False


@dataclass
class _State:
    precision: str = "fp32"
    compiled: Callable | None = None
    compile_failed: str | None = None
    warned: bool = False
    report: AccelerationReport | None = None


_STATES: "weakref.WeakKeyDictionary[ImageEncoderViT, _State]" = weakref.WeakKeyDictionary()


class AcceleratedImageEncoderViT(ImageEncoderViT):
    """The class an accelerated encoder instance is switched to (only that instance).

    It adds no parameters or buffers, so ``state_dict()`` keys and values are unchanged, and
    ``isinstance(encoder, ImageEncoderViT)`` still holds. A deep copy or unpickled copy of an
    accelerated encoder stays accelerated (eager, fp32).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        ):
            return fast_encoder_forward(self, x)  # autograd: the reference implementation
        state = _STATES.get(self)
        if state is None:  # a copy: the dtype follows the weights
            return fast_encoder_forward(self, x)
        return self._run(state, x, torch.bfloat16 if state.precision == "bf16" else None)

    def _run(self, state: _State, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        if state.compiled is not None:
            try:
                return state.compiled(self, x, dtype)
            except Exception as exc:  # compile or run failure: fall back to eager for good
                state.compiled = None
                state.compile_failed = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                if state.report is not None:
                    state.report.compile = False
                    state.report.compile_error = state.compile_failed
                if not state.warned:
                    state.warned = True
                    warnings.warn(
                        "sam_widget: torch.compile of the image encoder failed "
                        f"({state.compile_failed}); continuing with the eager fast path.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
        return fast_encoder_forward(self, x, dtype)


def _compiled_body(encoder: ImageEncoderViT, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return fast_encoder_forward(encoder, x, dtype)


def encoder_precision(encoder: ImageEncoderViT) -> str | None:
    """``"bf16"`` if the encoder's linear weights were converted (precision='bf16'), ``"fp32"``
    if they are fp32, ``None`` for an encoder that is not an ``ImageEncoderViT``."""
    if not isinstance(encoder, ImageEncoderViT):
        return None
    return "bf16" if _has_converted_linears(encoder) else "fp32"


def run_encoder(encoder: ImageEncoderViT, x: torch.Tensor, precision: str) -> torch.Tensor:
    """The encoder's fast forward in ``precision`` (``"fp32"`` or ``"bf16"``).

    An encoder prepared by :func:`accelerate` with the same precision runs through its state
    (so a ``compile=True`` acceleration is used); otherwise :func:`fast_encoder_forward`.
    """
    dtype = torch.bfloat16 if precision == "bf16" else None
    state = _STATES.get(encoder) if type(encoder) is AcceleratedImageEncoderViT else None
    if state is not None and state.precision == precision:
        return encoder._run(state, x, dtype)
    return fast_encoder_forward(encoder, x, dtype)


def compile_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where compiled kernels are kept: ``cache_dir``, else ``$SAM_WIDGET_HOME/inductor``,
    else ``~/.cache/sam_widget/inductor``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from .registry import cache_home

    return cache_home() / "inductor"


def _inductor_default_dir() -> str | None:
    """Inductor's own default cache directory (what importing torch._dynamo sets)."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        return os.path.abspath(default_cache_dir())
    except Exception:  # pragma: no cover - other torch versions
        return None


def _resolve_compile(compile: bool | str) -> tuple[bool, str]:
    if isinstance(compile, str):
        if compile != "auto":
            raise ValueError(f"compile must be True, False or 'auto', not {compile!r}.")
        # Measured on the 2-core CPU: no gain over the eager fast path, 96 s first compile.
        # Not measured on CUDA; a first compile costs about a minute there too, which is too
        # much for an interactive first click, so 'auto' never compiles (see accelerate()).
        return False, "compile='auto': eager fast path (compiling does not pay off here)"
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True, False or 'auto', not {type(compile).__name__}.")
    return compile, f"compile={compile}"


def is_accelerated(sam: Sam | ImageEncoderViT) -> bool:
    """Whether ``sam`` (or an encoder) currently runs the fast forward."""
    enc = sam.image_encoder if isinstance(sam, Sam) else sam
    return type(enc) is AcceleratedImageEncoderViT


def accelerate(
    sam: Sam,
    *,
    compile: bool | str = "auto",
    cache_dir: str | os.PathLike | None = None,
    precision: str = "fp32",
    _resolved: bool = False,
) -> AccelerationReport:
    """Make ``sam.image_encoder`` fast, in place and reversibly.

    The given model is modified in place: its encoder *instance* is switched to
    :class:`AcceleratedImageEncoderViT` (no other instance or class is touched, no
    parameter changes, ``state_dict`` is identical). Everyone holding this model gets the
    fast encoder (results within floating-point summation noise of the reference) until
    :func:`deaccelerate` / ``report.undo()``. Work on a ``copy.deepcopy(sam)`` if other
    holders must keep the exact reference. Calling it again updates the options.

    Args:
      sam: a segment_anything ``Sam`` whose ``image_encoder`` is an ``ImageEncoderViT``
        (official vit_b/l/h or custom sizes). Other encoders are left alone
        (``report.accelerated`` is False).
      compile: ``True`` to also ``torch.compile`` the fast forward (on its first call; if
        compiling or the compiled code fails, a warning is issued once and the eager fast
        path is used from then on), ``False`` for eager only, ``"auto"`` (default) = False.
        Why "auto" never compiles: on the project's 2-core AVX2 CPU (vit_b, fp32) the eager
        fast path takes about half the CPU time of ``SamPredictor.set_image``; compiling it
        gave no further gain (11.6 vs 11.5 CPU-s per encode, interleaved), while the first
        call took 96 s with an empty cache and ~19 s (3 CPU-s of overhead) in a new process
        with a warm cache. That is a bad trade for the first click in a notebook. On CUDA
        compile may pay (published segment-anything-fast numbers) but was not measurable
        here, and a first compile costs about a minute there too; pass ``compile=True``.
      cache_dir: directory for Inductor's on-disk cache when compiling (default
        :func:`compile_cache_dir`, i.e. ``$SAM_WIDGET_HOME/inductor``), so that only the
        first compile on a machine pays full price. It is applied through the process-wide
        ``TORCHINDUCTOR_CACHE_DIR`` (other compiles in the process then use it too): always
        when ``cache_dir`` is given; otherwise only if the variable is unset or still holds
        Inductor's default (importing ``torch._dynamo`` sets it), so a directory the user
        chose is respected. ``report.cache_dir`` says which directory is used.
      precision: ``"fp32"`` (default), ``"bf16"`` or ``"auto"`` (bf16 where the device has
        native bf16, see :mod:`sam_widget.engine.precision`). With bf16 the transformer
        blocks' linear weights are **converted to bf16 in place** (the encoder's memory
        halves; ``state_dict`` then holds bf16 tensors for them) and their products run in
        bf16; the residual stream, layer norms, patch embedding and neck stay fp32, and
        attention runs in fp32 on CPUs (faster there, see ``_attn_dtype``) and bf16 on GPUs.
        Inputs and outputs stay fp32, so ``SamPredictor`` and the automatic mask generator
        keep working. :func:`deaccelerate` (or ``accelerate(sam, precision="fp32")``)
        converts the weights back to fp32, keeping their bf16 rounding.

    Returns:
      an :class:`AccelerationReport`.
    """
    if not isinstance(sam, Sam):
        raise TypeError(f"accelerate needs a segment_anything Sam, not {type(sam).__name__}.")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}, not {precision!r}.")
    do_compile, compile_note = _resolve_compile(compile)
    enc = sam.image_encoder
    device = next(enc.parameters()).device if any(True for _ in enc.parameters()) else torch.device("cpu")
    report = AccelerationReport(accelerated=False, device=str(device), _sam_ref=weakref.ref(sam))
    if type(enc) not in (ImageEncoderViT, AcceleratedImageEncoderViT):
        report.reason = (
            f"image_encoder is a {type(enc).__name__}, not segment_anything's ImageEncoderViT; "
            "left unchanged"
        )
        return report

    from .precision import resolve_precision

    notes = [compile_note]
    if not _resolved:  # (load_sam resolved it already, and warned once if it had to)
        precision = resolve_precision(precision, device)
    if precision == "bf16":
        saved = convert_linear_weights(enc, torch.bfloat16)
        if saved:
            notes.append(f"linear weights converted to bf16 in place ({saved / 2**20:.0f} MiB saved)")
    elif _has_converted_linears(enc):
        convert_linear_weights(enc, torch.float32)
        notes.append("linear weights converted back to fp32 (values keep their bf16 rounding)")

    state = _State(precision=precision, report=report)
    if do_compile:
        cdir = compile_cache_dir(cache_dir)
        current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        if cache_dir is not None or current is None or current == _inductor_default_dir():
            try:
                cdir.mkdir(parents=True, exist_ok=True)
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cdir)
            except OSError as exc:
                notes.append(f"cannot use cache dir {cdir}: {exc}")
        report.cache_dir = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR", str(cdir)))
        try:
            state.compiled = torch.compile(_compiled_body, dynamic=False)
            report.compile = True
        except Exception as exc:
            state.compile_failed = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            report.compile_error = state.compile_failed
            warnings.warn(
                f"sam_widget: torch.compile is unavailable ({state.compile_failed}); "
                "using the eager fast path.",
                RuntimeWarning,
                stacklevel=2,
            )
            state.warned = True

    enc.__class__ = AcceleratedImageEncoderViT
    _STATES[enc] = state
    report.accelerated = True
    report.precision = precision
    report.total_blocks = len(enc.blocks)
    report.fast_blocks = sum(
        1 for b in enc.blocks if type(b) is Block and type(b.attn) is Attention
    )
    report.notes = notes
    return report


def deaccelerate(sam: Sam | ImageEncoderViT) -> bool:
    """Undo :func:`accelerate`: the encoder runs segment_anything's own forward again.

    Afterwards the model is bit-identical in behaviour to one never accelerated, except
    after ``precision="bf16"``: the linear weights are converted back to fp32 but keep the
    values bf16 rounded them to. Returns True if something was undone.
    """
    enc = sam.image_encoder if isinstance(sam, Sam) else sam
    if type(enc) is not AcceleratedImageEncoderViT:
        return False
    if _has_converted_linears(enc):
        convert_linear_weights(enc, torch.float32)
    enc.__class__ = ImageEncoderViT
    state = _STATES.pop(enc, None)
    if state is not None and state.report is not None:
        state.report.accelerated = False
    return True
