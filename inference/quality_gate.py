"""The quality gate: is a camera frame worth pre-labelling and showing to an annotator?

Shelf cameras see people, carts, boxes, refrigerator doors and glare; a frame full of them teaches
the pipeline nothing and wastes an annotator's time. The gate runs between ingestion and
pre-labelling and gives each frame a score and, below a threshold, a reason per check:

- ``blur``: the variance of the Laplacian of the grey frame (at ``analysis_width``), absolute and
  relative to the camera's recent accepted frames (a sharp shelf has many product edges);
- ``dark`` / ``bright``: the share of clipped shadows or highlights and the mean brightness;
- ``glare``: the share of grid cells mostly made of clipped highlights (a reflection on a door);
- ``obstructed``: the frame against the camera's recent accepted frames (its signature, a grid of
  colour and texture cells, gain-normalised): the largest connected region of changed cells, less
  the change the accepted frames show between themselves (restocking moves a facing or two, an
  obstruction covers one large contiguous area);
- ``few_detections``: the detector found far fewer boxes than the shelf usually has.

Everything is numpy over the whole frame at once; the functions are pure (config and arrays in,
a report out), so a notebook runs the same gate as the worker.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from inference.config import Config

REASONS = ("blur", "dark", "bright", "glare", "obstructed", "few_detections")


@dataclass(frozen=True)
class QualityGateConfig(Config):
    """Thresholds of the gate (tuned on the dev set's shelves by ``benchmarks/quality_gate.py``).

    analysis_width: frames are downscaled to this width before any check.
    grid: rows and columns of the occlusion signature's cells.
    min_sharpness: a Laplacian variance below this is blurred whatever the camera's history.
    min_relative_sharpness: below this share of the camera's recent median sharpness is blurred.
    shadow_level / highlight_level: grey levels (0..255) counted as clipped.
    max_clipped_share: a larger share of clipped shadows (highlights) is dark (bright).
    min_mean / max_mean: mean grey level outside these is dark / bright.
    glare_cell_share: a cell with at least this share of clipped highlights is a glare cell.
    max_glare_share: a larger share of glare cells is glare.
    colour_change / texture_change: a cell changed when its gain-normalised colour moved by more
        than ``colour_change`` (L1 over RGB shares) or its texture by more than ``texture_change``
        (absolute log ratio).
    max_obstructed_share: the largest changed region, beyond the references' own, above this
        share of the frame is an obstruction.
    min_detection_ratio: fewer boxes than this share of the shelf's usual count is few_detections,
        counted only where the shelf usually has at least ``min_usual_detections``.
    """

    analysis_width: int = 512
    grid: tuple[int, int] = (16, 24)
    min_sharpness: float = 25.0
    min_relative_sharpness: float = 0.35
    shadow_level: float = 10.0
    highlight_level: float = 245.0
    max_clipped_share: float = 0.35
    min_mean: float = 35.0
    max_mean: float = 215.0
    glare_cell_share: float = 0.5
    max_glare_share: float = 0.035
    colour_change: float = 0.16
    texture_change: float = 0.7
    max_obstructed_share: float = 0.12
    min_detection_ratio: float = 0.5
    min_usual_detections: float = 4.0


    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrameSignature:
    """What the gate keeps of a frame to compare later frames of its camera with.

    sharpness: variance of the Laplacian of the grey frame at the analysis width.
    cells: (rows, cols, 4): each cell's mean R, G, B divided by their sum (colour, brightness-free)
        and its mean absolute Laplacian divided by the frame's (texture, contrast-free).
    """

    sharpness: float
    cells: np.ndarray

    def as_dict(self) -> dict:
        return {"sharpness": round(float(self.sharpness), 3),
                "cells": np.round(self.cells, 4).tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> FrameSignature:
        return cls(float(data["sharpness"]), np.asarray(data["cells"], np.float32))


@dataclass(frozen=True)
class QualityReport:
    """The gate's decision: ``passed`` unless a check gave a reason; every check's score."""

    passed: bool
    reasons: list[str]
    scores: dict[str, float]
    forced: bool = False
    details: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "forced": self.forced, "reasons": list(self.reasons),
                "scores": {name: round(float(value), 4) for name, value in self.scores.items()},
                "details": dict(self.details)}


def grey_array(image: Image.Image | np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame downscaled to ``width`` (box filter): RGB float32 (h, w, 3) and grey (h, w), 0..255."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, np.uint8))
    image = image.convert("RGB")
    if image.width > width:
        height = max(8, round(image.height * width / image.width))
        image = image.resize((width, height), Image.BOX)
    rgb = np.asarray(image, np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return rgb, grey


def laplacian(grey: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian of the interior pixels."""
    return (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1])


def cell_means(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The mean of ``values`` (h, w[, c]) over a rows x cols grid of equal cells (edges cropped)."""
    rows, cols = grid
    h, w = values.shape[:2]
    ch, cw = h // rows, w // cols
    if ch == 0 or cw == 0:
        raise ValueError(f"a {w}x{h} image is too small for a {rows}x{cols} grid")
    cropped = values[: ch * rows, : cw * cols]
    shaped = cropped.reshape(rows, ch, cols, cw, *values.shape[2:])
    return shaped.mean(axis=(1, 3))


def signature(image: Image.Image | np.ndarray, config: QualityGateConfig = QualityGateConfig()) -> FrameSignature:
    """The frame's signature (see FrameSignature)."""
    rgb, grey = grey_array(image, config.analysis_width)
    return _signature(rgb, grey, config)


def _signature(rgb: np.ndarray, grey: np.ndarray, config: QualityGateConfig) -> FrameSignature:
    lap = laplacian(grey)
    texture = np.abs(lap)
    colour = cell_means(rgb[1:-1, 1:-1], config.grid)
    colour = colour / np.maximum(colour.sum(axis=-1, keepdims=True), 1e-3)
    cells_texture = cell_means(texture, config.grid) / max(float(texture.mean()), 1e-3)
    cells = np.concatenate([colour, cells_texture[..., None]], axis=-1).astype(np.float32)
    return FrameSignature(float(lap.var()), cells)


def changed_cells(cells: np.ndarray, reference: np.ndarray, config: QualityGateConfig) -> np.ndarray:
    """Which cells of ``cells`` differ from ``reference`` (both (rows, cols, 4)) beyond the thresholds."""
    colour = np.abs(cells[..., :3] - reference[..., :3]).sum(axis=-1)
    texture = np.abs(np.log((cells[..., 3] + 0.05) / (reference[..., 3] + 0.05)))
    return (colour > config.colour_change) | (texture > config.texture_change)


def largest_region_share(mask: np.ndarray) -> float:
    """The share of the grid covered by the largest 4-connected region of True cells."""
    if not mask.any():
        return 0.0
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    return float(sizes.max()) / mask.size


def assess(
    image: Image.Image | np.ndarray,
    *,
    references: Sequence[FrameSignature] = (),
    detections: int | None = None,
    usual_detections: float | None = None,
    config: QualityGateConfig = QualityGateConfig(),
) -> tuple[QualityReport, FrameSignature]:
    """Run every check on the frame. ``references``: signatures of the camera's recent accepted
    frames, newest first (none: the occlusion and relative-blur checks are skipped);
    ``detections``/``usual_detections``: this frame's box count and the shelf's usual one (median
    of its recent accepted frames). Returns the report and the frame's signature (kept to compare
    the camera's later frames with, once this one is accepted)."""
    rgb, grey = grey_array(image, config.analysis_width)
    own = _signature(rgb, grey, config)
    scores: dict[str, float] = {}
    reasons: list[str] = []
    details: dict[str, str] = {}

    # Blur.
    scores["sharpness"] = own.sharpness
    relative = None
    if references:
        usual = float(np.median([ref.sharpness for ref in references]))
        relative = own.sharpness / max(usual, 1e-6)
        scores["relative_sharpness"] = relative
    if own.sharpness < config.min_sharpness or (relative is not None and relative < config.min_relative_sharpness):
        reasons.append("blur")
        details["blur"] = (f"Laplacian variance {own.sharpness:.1f}"
                           + (f", {relative:.0%} of the camera's usual" if relative is not None else ""))

    # Exposure.
    pixels = grey.size
    shadows = float((grey <= config.shadow_level).sum()) / pixels
    highlights_mask = grey >= config.highlight_level
    highlights = float(highlights_mask.sum()) / pixels
    mean = float(grey.mean())
    glare = float((cell_means(highlights_mask.astype(np.float32), config.grid) >= config.glare_cell_share).mean())
    scores.update(brightness=mean, shadows=shadows, highlights=highlights, glare=glare)
    if shadows > config.max_clipped_share or mean < config.min_mean:
        reasons.append("dark")
        details["dark"] = f"mean grey {mean:.0f}, {shadows:.0%} clipped shadows"
    if highlights > config.max_clipped_share or mean > config.max_mean:
        reasons.append("bright")
        details["bright"] = f"mean grey {mean:.0f}, {highlights:.0%} clipped highlights"
    elif glare > config.max_glare_share:
        reasons.append("glare")
        details["glare"] = f"{glare:.0%} of the frame is glare"

    # Occlusion against the camera's recent accepted frames.
    if references:
        stack = np.stack([ref.cells for ref in references])
        if stack.shape[1:] == own.cells.shape:
            reference = np.median(stack, axis=0)
            share = largest_region_share(changed_cells(own.cells, reference, config))
            # The change accepted frames show between themselves: restocking, people passing by far away.
            usual_change = 0.0
            if len(references) >= 2:
                usual_change = float(np.median([
                    largest_region_share(changed_cells(ref.cells, reference, config)) for ref in references]))
            scores["changed_share"] = share
            scores["usual_change"] = usual_change
            if share - usual_change > config.max_obstructed_share:
                reasons.append("obstructed")
                details["obstructed"] = f"{share:.0%} of the shelf changed (usually {usual_change:.0%})"

    report = QualityReport(not reasons, reasons, scores, details=details)
    if detections is not None:
        report = detection_check(report, detections=detections, usual_detections=usual_detections, config=config)
    return report, own


def detection_check(report: QualityReport, *, detections: int, usual_detections: float | None,
                    config: QualityGateConfig = QualityGateConfig()) -> QualityReport:
    """The report with the detection-count check added (when the boxes are known only after the image checks)."""
    scores = {**report.scores, "detections": float(detections)}
    reasons, details = list(report.reasons), dict(report.details)
    if usual_detections is not None and usual_detections >= config.min_usual_detections:
        ratio = detections / usual_detections
        scores["detection_ratio"] = ratio
        if ratio < config.min_detection_ratio and "few_detections" not in reasons:
            reasons.append("few_detections")
            details["few_detections"] = f"{detections} boxes, the shelf usually has {usual_detections:.0f}"
    return QualityReport(not reasons, reasons, scores, report.forced, details)
