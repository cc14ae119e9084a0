"""Which number format the encoder computes in: ``precision="auto" | "fp32" | "bf16"``.

``"auto"`` (the default everywhere: :class:`~sam_widget.engine.segmenter.Segmenter`,
:func:`~sam_widget.engine.checkpoints.load_sam`, ``SamWidget``, the CLI) means bf16 where the
hardware computes bf16 matrix products natively, fp32 elsewhere:

* CUDA: bf16 on GPUs of compute capability 8.0 or newer (Ampere, Ada, Hopper, ...), whose
  tensor cores run bf16; fp32 on older GPUs (where torch would emulate it).
* x86 CPUs: bf16 when the CPU reports AVX-512 BF16 (``avx512_bf16``) or AMX
  (``amx_bf16``), read from ``torch.cpu.get_capabilities()`` (torch >= 2.6) or else from
  ``/proc/cpuinfo``. Measured on the project's 2-core AVX-512 BF16 CPU with torch 2.14: a
  4096 x 768 x 3072 linear runs at ~360-420 GFLOP/s in bf16 against ~170-190 in fp32.
* ARM CPUs that report the bf16 extension (``bf16`` / ``FEAT_BF16``): torch's speed there
  depends on the build, so a one-off micro-benchmark (a 1024 x 768 x 1536 linear, about
  0.2 s) decides, and its answer is cached per machine and torch version in
  ``$SAM_WIDGET_HOME/precision.json``.
* Anything else (MPS, CPUs without bf16): fp32.

``exact=True`` always computes in fp32 (bit-identical to ``SamPredictor``).

``$SAM_WIDGET_PRECISION`` (``fp32`` or ``bf16``) replaces the hardware's choice for every
``"auto"`` (e.g. to get the same numbers on every machine; the test suite sets ``fp32``).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "PRECISIONS",
    "PRECISION_ENV",
    "check_precision",
    "resolve_precision",
    "native_bf16",
    "cpu_bf16_support",
]

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_ENV = "SAM_WIDGET_PRECISION"
_BENCH_MIN_SPEEDUP = 1.3  # bf16 must beat fp32 by this much on ARM to be chosen


def check_precision(precision: Any) -> str:
    """Validate a ``precision`` argument: one of ``"auto"``, ``"fp32"``, ``"bf16"``."""
    if not isinstance(precision, str):
        raise TypeError(f"precision must be one of {PRECISIONS}, not {type(precision).__name__}.")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    return precision


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
            break
    return flags


def _cpu_capabilities() -> dict[str, Any]:
    get = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    if get is None:  # torch < 2.6
        return {}
    try:
        return dict(get())
    except Exception:  # noqa: BLE001 - capability probing must never break loading a model
        return {}


@functools.lru_cache(maxsize=None)
def cpu_bf16_support() -> tuple[bool, str]:
    """``(native, how_we_know)``: does this CPU compute bf16 matrix products natively?

    x86: AVX-512 BF16 or AMX-BF16. ARM with the bf16 extension: decided by a cached
    micro-benchmark (see the module docstring). Cached for the process.
    """
    caps = _cpu_capabilities()
    flags = _cpu_flags()
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686") or caps.get("architecture") == "x86_64":
        for name in ("amx_bf16", "avx512_bf16"):
            if caps.get(name):
                return True, f"torch.cpu.get_capabilities(): {name}"
            if name in flags:
                return True, f"/proc/cpuinfo: {name}"
        source = "torch.cpu.get_capabilities()" if caps else "/proc/cpuinfo"
        return False, f"{source}: no avx512_bf16 / amx_bf16"
    if machine in ("arm64", "aarch64"):
        has = bool(caps.get("bf16") or caps.get("sve_bf16")) or "bf16" in flags or _mac_feat_bf16()
        if not has:
            return False, "ARM CPU without the bf16 extension"
        faster, speedup = _cached_arm_benchmark()
        verdict = "faster" if faster else "not faster"
        return faster, f"ARM bf16 extension; micro-benchmark: bf16 {speedup:.2f}x fp32 ({verdict})"
    return False, f"{machine or 'unknown'} CPU: bf16 not known to be native"


def _mac_feat_bf16() -> bool:
    if platform.system() != "Darwin":
        return False
    import subprocess

    try:
        out = subprocess.run(
            ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == "1"


def _cache_file() -> Path:
    from .registry import cache_home  # one rule for where sam_widget keeps its files

    base = cache_home()
    return base / "precision.json"


def _machine_key() -> str:
    return f"{platform.machine()}|{platform.processor()}|{os.cpu_count()}|torch {torch.__version__}"


def _cached_arm_benchmark() -> tuple[bool, float]:
    path, key = _cache_file(), _machine_key()
    try:
        cached = json.loads(path.read_text()).get(key)
        if cached is not None:
            return bool(cached["bf16_faster"]), float(cached["speedup"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    speedup = _matmul_speedup()
    faster = speedup >= _BENCH_MIN_SPEEDUP
    try:
        data: dict = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except ValueError:
                data = {}
        data[key] = {"bf16_faster": faster, "speedup": speedup}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # the answer is still used for this process
    return faster, speedup


def _matmul_speedup() -> float:
    """fp32 time / bf16 time of one encoder-sized linear (median of 3 after a warm-up)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 768, generator=g)
    w = torch.randn(1536, 768, generator=g)

    def best(dtype: torch.dtype) -> float:
        a, b = x.to(dtype), w.to(dtype)
        torch.nn.functional.linear(a, b)
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            torch.nn.functional.linear(a, b)
            ts.append(time.perf_counter() - t)
        return sorted(ts)[1]

    with torch.no_grad():
        return best(torch.float32) / max(best(torch.bfloat16), 1e-9)


def native_bf16(device: torch.device | str) -> tuple[bool, str]:
    """``(native, reason)``: does ``device`` compute bf16 matrix products natively?"""
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            major, minor = torch.cuda.get_device_capability(dev)
        except Exception as exc:  # noqa: BLE001
            return False, f"CUDA capability unknown ({exc})"
        name = f"compute capability {major}.{minor}"
        return (major >= 8), (f"CUDA {name} (bf16 tensor cores)" if major >= 8 else f"CUDA {name}: no bf16 tensor cores")
    if dev.type == "cpu":
        return cpu_bf16_support()
    return False, f"{dev.type}: bf16 not measured here"


def resolve_precision(precision: str, device: torch.device | str, *, exact: bool = False) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``) on ``device``.

    ``exact=True`` resolves to fp32 (and refuses an explicit ``"bf16"``). An explicit ``"bf16"``
    is honoured everywhere; where the device has no native bf16 a ``RuntimeWarning`` says it
    will probably be slower than fp32.
    """
    check_precision(precision)
    if exact:
        if precision == "bf16":
            raise ValueError(
                "precision='bf16' changes the numbers; it cannot be combined with exact=True "
                "(exact mode is fp32, bit-identical to SamPredictor)."
            )
        return "fp32"
    if precision == "fp32":
        return "fp32"
    if precision == "auto":
        forced = os.environ.get(PRECISION_ENV, "").strip().lower()
        if forced in ("fp32", "bf16"):
            precision = forced
            if forced == "fp32":
                return "fp32"
        elif forced:
            raise ValueError(f"${PRECISION_ENV} must be 'fp32' or 'bf16' (or unset), got {forced!r}.")
    native, why = native_bf16(device)
    if precision == "bf16":
        if not native:
            warnings.warn(
                f"precision='bf16' on a device without native bf16 ({why}): expect it to be "
                "slower than fp32. precision='auto' picks fp32 here.",
                RuntimeWarning,
                stacklevel=3,
            )
        return "bf16"
    return "bf16" if native else "fp32"
