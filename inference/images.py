"""Reading frames and cutting crops.

Frames are read as stored, without applying EXIF orientation: box coordinates in the data refer
to the raw pixel grid, and rotating the image would silently misplace every box.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

Bbox = tuple[float, float, float, float]  # x, y, w, h in pixels, top-left origin


class ImageError(ValueError):
    """The bytes are not a readable image."""


def open_image(source: str | Path | bytes | BinaryIO) -> Image.Image:
    """Decode an image to RGB, ignoring EXIF orientation. Raises ImageError when unreadable."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        raise ImageError(f"not a readable image ({error})") from error


def image_size(source: str | Path | bytes | BinaryIO) -> tuple[int, int]:
    """(width, height) of the stored pixel grid. The image is decoded, so a truncated file is
    caught here rather than when the pipeline first reads it."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as image:
            image.load()
            return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        raise ImageError(f"not a readable image ({error})") from error


def crop_boxes(image: Image.Image, boxes: Sequence[Bbox]) -> list[Image.Image]:
    """Cut one crop per box, clamped to the image; degenerate boxes still give a 1x1 crop."""
    width, height = image.size
    crops = []
    for x, y, w, h in boxes:
        left = min(max(int(round(x)), 0), width - 1)
        top = min(max(int(round(y)), 0), height - 1)
        right = max(min(int(round(x + w)), width), left + 1)
        bottom = max(min(int(round(y + h)), height), top + 1)
        crops.append(image.crop((left, top, right, bottom)))
    return crops
