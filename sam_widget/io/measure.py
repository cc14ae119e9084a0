"""Per-object measurements as a pandas DataFrame, by ``skimage.measure.regionprops_table``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ._inputs import normalise
from .rle import mask_bbox_xyxy

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["measurements", "MEASUREMENT_COLUMNS"]

_PROPS = (
    "area", "bbox", "centroid", "perimeter", "equivalent_diameter_area", "eccentricity", "solidity",
)

MEASUREMENT_COLUMNS = (
    "image", "image_index", "object", "label", "score", "area_px",
    "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "centroid_x", "centroid_y",
    "perimeter_px", "equivalent_diameter_px", "eccentricity", "solidity",
)


def _intensity_of(spec: Any) -> np.ndarray | None:
    """The image's pixels for mean intensities: the array given, or the file read with
    Pillow (EXIF orientation applied; grey stays one channel, palette/CMYK become RGB)."""
    if spec.pixels is not None:
        return np.asarray(spec.pixels)
    if spec.path is not None and Path(spec.path).is_file():
        from PIL import Image, ImageOps

        with Image.open(spec.path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("L", "I", "I;16", "F", "RGB", "RGBA", "LA"):
                im = im.convert("RGB")
            return np.asarray(im)
    return None


def _channel_names(channels: int) -> list[str]:
    if channels == 1:
        return ["mean_intensity"]
    if channels in (3, 4):
        return ["mean_r", "mean_g", "mean_b", "mean_a"][:channels]
    return [f"mean_c{k}" for k in range(channels)]


def measurements(
    images: Sequence[Any],
    masks_per_image: Sequence[Any],
    labels: Sequence[Sequence[str]] | None = None,
    scores: Sequence[Sequence[float | None]] | None = None,
    *,
    pixel_size: float | None = None,
    unit: str = "um",
) -> "pd.DataFrame":
    """One row per object, measured by ``skimage.measure.regionprops_table``.

    ``images``, ``masks_per_image``, ``labels``, ``scores`` as for
    :func:`sam_widget.io.to_coco`. Mean intensities need the pixels: give the images as
    arrays (``(H, W)`` or ``(H, W, C)``) or as paths of readable files (or dicts with a
    ``"path"`` or a ``"pixels"`` array next to ``file_name``); for sizes and other dicts the
    intensity columns are missing (NaN).

    Columns (pixel coordinates: x = column, y = row; the centre of pixel ``(row r,
    column c)`` is ``(x, y) = (c, r)``):

    * ``image`` (file name), ``image_index`` (0-based), ``object`` (1-based index in its
      image, = its value in the label image), ``label``, ``score`` (predicted IoU or NaN);
    * ``area_px`` (pixels); ``bbox_x0``, ``bbox_y0``, ``bbox_x1``, ``bbox_y1`` (XYXY,
      end-exclusive: ``x1 - x0`` is the width); ``centroid_x``, ``centroid_y``;
    * ``perimeter_px`` (skimage's ``perimeter``: 4-connected boundary length estimate);
      ``equivalent_diameter_px`` (diameter of the disk of the same area);
      ``eccentricity`` (of the ellipse with the same second moments, 0 = circle);
      ``solidity`` (area / convex hull area);
    * mean intensity per channel: ``mean_intensity`` (one channel), ``mean_r``,
      ``mean_g``, ``mean_b`` (+ ``mean_a``) for RGB(A), ``mean_c<k>`` otherwise;
    * with ``pixel_size`` (the side of one square pixel in ``unit``): ``area_<unit>2``,
      ``perimeter_<unit>``, ``equivalent_diameter_<unit>``, ``centroid_x_<unit>``,
      ``centroid_y_<unit>`` (``unit`` reduced to ASCII letters/digits, e.g. "µm" -> "um").

    An empty mask gives a row with area 0 and NaN geometry. ``df.attrs`` holds
    ``pixel_size`` and ``unit``.
    """
    import pandas as pd
    from skimage.measure import regionprops_table

    if pixel_size is not None:
        if isinstance(pixel_size, bool) or not isinstance(pixel_size, (int, float)) or not np.isfinite(pixel_size) or pixel_size <= 0:
            raise ValueError(f"pixel_size must be a number > 0 (the side of a pixel in {unit!r}), got {pixel_size!r}.")
    if not isinstance(unit, str):
        raise TypeError(f"unit must be a string, not {type(unit).__name__}.")
    suffix = re.sub(r"[^A-Za-z0-9]", "", unit.replace("µ", "u").replace("μ", "u")) or "unit"
    specs = normalise(images, masks_per_image, labels, scores)
    rows: list[dict[str, Any]] = []
    channel_cols: list[str] = []
    for index, spec in enumerate(specs):
        pixels = _intensity_of(spec) if spec.masks else None
        if pixels is not None:
            if pixels.shape[:2] != (spec.height, spec.width):
                raise ValueError(
                    f"images[{index}] ({spec.file_name!r}) is {pixels.shape[0]} x {pixels.shape[1]} but its masks "
                    f"are {spec.height} x {spec.width} (H x W)."
                )
            names = _channel_names(1 if pixels.ndim == 2 else pixels.shape[2])
            channel_cols += [n for n in names if n not in channel_cols]
        for k, (mask, label, score) in enumerate(zip(spec.masks, spec.labels, spec.scores), start=1):
            row: dict[str, Any] = {
                "image": spec.file_name, "image_index": index, "object": k, "label": label,
                "score": np.nan if score is None else score,
            }
            box = mask_bbox_xyxy(mask)
            if box is None:
                row["area_px"] = 0
                rows.append(row)
                continue
            x0, y0, x1, y1 = box
            # Crop with a one-pixel margin so the perimeter sees the background around it.
            cx0, cy0 = max(x0 - 1, 0), max(y0 - 1, 0)
            cx1, cy1 = min(x1 + 1, spec.width), min(y1 + 1, spec.height)
            crop = mask[cy0:cy1, cx0:cx1].astype(np.uint8)
            intensity = None if pixels is None else pixels[cy0:cy1, cx0:cx1]
            props = list(_PROPS) + (["intensity_mean"] if intensity is not None else [])
            table = regionprops_table(crop, intensity_image=intensity, properties=props)
            row.update({
                "area_px": int(table["area"][0]),
                "bbox_x0": int(table["bbox-1"][0]) + cx0, "bbox_y0": int(table["bbox-0"][0]) + cy0,
                "bbox_x1": int(table["bbox-3"][0]) + cx0, "bbox_y1": int(table["bbox-2"][0]) + cy0,
                "centroid_x": float(table["centroid-1"][0]) + cx0, "centroid_y": float(table["centroid-0"][0]) + cy0,
                "perimeter_px": float(table["perimeter"][0]),
                "equivalent_diameter_px": float(table["equivalent_diameter_area"][0]),
                "eccentricity": float(table["eccentricity"][0]), "solidity": float(table["solidity"][0]),
            })
            if intensity is not None:
                names = _channel_names(1 if intensity.ndim == 2 else intensity.shape[2])
                if intensity.ndim == 2:
                    row[names[0]] = float(table["intensity_mean"][0])
                else:
                    for c, name in enumerate(names):
                        row[name] = float(table[f"intensity_mean-{c}"][0])
            rows.append(row)
    columns = list(MEASUREMENT_COLUMNS) + channel_cols
    df = pd.DataFrame(rows, columns=columns)
    if pixel_size is not None:
        s = float(pixel_size)
        df[f"area_{suffix}2"] = df["area_px"] * s * s
        df[f"perimeter_{suffix}"] = df["perimeter_px"] * s
        df[f"equivalent_diameter_{suffix}"] = df["equivalent_diameter_px"] * s
        df[f"centroid_x_{suffix}"] = df["centroid_x"] * s
        df[f"centroid_y_{suffix}"] = df["centroid_y"] * s
    df.attrs["pixel_size"] = pixel_size
    df.attrs["unit"] = unit if pixel_size is not None else "px"
    return df
