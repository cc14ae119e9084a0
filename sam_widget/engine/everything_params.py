"""The parameters of "segment everything", validated -- without importing torch.

:class:`EverythingParams` holds ``SamAutomaticMaskGenerator``'s parameters (same names,
defaults and meaning); :func:`params_from` builds it from keyword arguments. Kept apart
from :mod:`.everything` (which imports torch and segment_anything) so that a notebook's
main thread can check parameters while the model is still being imported on a background
thread: importing torch / segment_anything from two threads at once can fail with Python's
"deadlock detected by _ModuleLock" (seen with the widget's *Everything* button).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["EverythingParams", "params_from", "MAX_POINTS_PER_SIDE", "MAX_CROP_LAYERS"]

MAX_POINTS_PER_SIDE = 512  # 262 144 prompts: hours on a CPU; more is surely a mistake
MAX_CROP_LAYERS = 4  # 1 + 4 + 16 + 64 + 256 crops, each encoded


@dataclass(frozen=True)
class EverythingParams:
    """The parameters of ``SamAutomaticMaskGenerator`` (same names, defaults and meaning),
    validated. ``output_mode`` is not one: the result is always a :class:`Proposals`."""

    points_per_side: int | None = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: tuple[np.ndarray, ...] | None = None
    min_mask_region_area: int = 0

    def __post_init__(self) -> None:
        _int(self, "points_per_batch", 1, 1 << 16)
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
            _float(self, name, 0.0, 1.0)
        _float(self, "stability_score_offset", 0.0, math.inf)
        _float(self, "crop_overlap_ratio", 0.0, 1.0, hi_open=True)
        _int(self, "crop_n_layers", 0, MAX_CROP_LAYERS)
        _int(self, "crop_n_points_downscale_factor", 1, 1 << 16)
        _int(self, "min_mask_region_area", 0, 1 << 62)
        if self.point_grids is None:
            if self.points_per_side is None:
                raise ValueError("points_per_side is None: give points_per_side or point_grids.")
            _int(self, "points_per_side", 1, MAX_POINTS_PER_SIDE)
            last = self.points_per_side // self.crop_n_points_downscale_factor**self.crop_n_layers
            if last < 1:
                raise ValueError(
                    f"crop_n_points_downscale_factor={self.crop_n_points_downscale_factor} leaves no point "
                    f"in crop layer {self.crop_n_layers} (points_per_side={self.points_per_side} // "
                    f"{self.crop_n_points_downscale_factor}**{self.crop_n_layers} = 0)."
                )
        else:
            if self.points_per_side is not None:
                raise ValueError(
                    "point_grids replaces points_per_side: pass points_per_side=None with point_grids."
                )
            object.__setattr__(self, "point_grids", _check_grids(self.point_grids, self.crop_n_layers))
        if self.min_mask_region_area > 0:
            try:
                import cv2  # noqa: F401  (segment_anything's remove_small_regions uses it)
            except ImportError:
                raise ValueError(
                    "min_mask_region_area > 0 needs OpenCV (pip install opencv-python-headless), "
                    "as segment_anything's postprocessing does."
                ) from None

    def grids(self) -> list[np.ndarray]:
        """The ``(N_i, 2)`` point grid of each crop layer, ``(x, y)`` in [0, 1]."""
        if self.point_grids is not None:
            return list(self.point_grids)
        from segment_anything.utils.amg import build_all_layer_point_grids  # (torch: only when a run starts)

        return build_all_layer_point_grids(self.points_per_side, self.crop_n_layers, self.crop_n_points_downscale_factor)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.point_grids is not None:
            d["point_grids"] = [g.copy() for g in self.point_grids]
        return d


def params_from(kwargs: dict[str, Any]) -> EverythingParams:
    """:class:`EverythingParams` from keyword arguments: ``TypeError`` naming any unknown
    one, ``ValueError`` naming a value out of range."""
    unknown = sorted(set(kwargs) - set(EverythingParams.__dataclass_fields__))
    if unknown:
        raise TypeError(f"segment_everything() got unexpected keyword argument(s): {', '.join(unknown)}.")
    return EverythingParams(**kwargs)


def _int(p: EverythingParams, name: str, lo: int, hi: int) -> None:
    v = getattr(p, name)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        if not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v) and float(v).is_integer():
            v = int(v)
        else:
            raise ValueError(f"{name} must be a whole number in [{lo}, {hi}], got {v!r}.")
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v!r}.")
    object.__setattr__(p, name, int(v))


def _float(p: EverythingParams, name: str, lo: float, hi: float, hi_open: bool = False) -> None:
    v = getattr(p, name)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {v!r}.")
    v = float(v)
    inside = lo <= v < hi if hi_open else lo <= v <= hi
    if not math.isfinite(v) or not inside:
        rng = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise ValueError(f"{name} must be a number in {rng}, got {v!r}.")
    object.__setattr__(p, name, v)


def _check_grids(grids: Any, n_layers: int) -> tuple[np.ndarray, ...]:
    if isinstance(grids, np.ndarray):
        grids = [grids]
    try:
        grids = list(grids)
    except TypeError:
        raise ValueError(f"point_grids must be a list of (N, 2) arrays, got {type(grids).__name__}.") from None
    if len(grids) != n_layers + 1:
        raise ValueError(
            f"point_grids must hold one grid per crop layer: {n_layers + 1} for crop_n_layers={n_layers}, "
            f"got {len(grids)}."
        )
    out = []
    for i, g in enumerate(grids):
        try:
            a = np.array(g, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"point_grids[{i}] must be an (N, 2) array of numbers.") from None
        if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 1:
            raise ValueError(f"point_grids[{i}] must be an (N, 2) array with N >= 1, got shape {a.shape}.")
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError(f"point_grids[{i}] must hold (x, y) in [0, 1] (fractions of the crop's size).")
        a.setflags(write=False)
        out.append(a)
    return tuple(out)
