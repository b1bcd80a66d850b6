"""Reading frames and cutting crops.

Frames are read as stored, without applying EXIF orientation: box coordinates in the data refer
to the raw pixel grid, and rotating the image would silently misplace every box. The web UI follows
the same rule (CSS ``image-orientation: none`` wherever it draws a frame).
"""
from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

Bbox = tuple[float, float, float, float]  # x, y, w, h in pixels, top-left origin


# Formats every browser draws, by Pillow's name: the extension a stored frame is named with and the
# content type it is served as. Phones write multi-picture JPEGs, which Pillow names MPO.
WEB_IMAGE_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
}
# Product photos keep their catalogue's names, which may also end in these.
_WEB_IMAGE_TYPES = {f".{extension}": content_type for extension, content_type in WEB_IMAGE_FORMATS.values()}
_WEB_IMAGE_TYPES |= {".jpeg": "image/jpeg", ".bmp": "image/bmp"}


class ImageError(ValueError):
    """The bytes are not a readable image."""


class ImageFormatError(ImageError):
    """The image is in a format the caller does not take."""

    def __init__(self, message: str, *, image_format: str):
        super().__init__(message)
        self.image_format = image_format


class ImageTooLarge(ImageError):
    """The image has more pixels than the caller accepts (known from its header, before decoding)."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str  # Pillow's name of the format the bytes are in ("JPEG", "PNG", ...), whatever the file is called


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
    info = inspect_image(source)
    return info.width, info.height


def inspect_image(source: str | Path | bytes | BinaryIO, *, max_pixels: int | None = None,
                  formats: Collection[str] | None = None) -> ImageInfo:
    """Size and format of a readable image. The format (one of ``formats``, Pillow's names) and the
    pixel count (at most ``max_pixels``) are checked from the header, before anything is decoded: a
    small file that would decode to gigabytes costs nothing. Then the image is decoded, so that a
    truncated file is caught here. Raises ImageFormatError, ImageTooLarge or ImageError."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as image:
            if formats is not None and image.format not in formats:
                raise ImageFormatError(f"a {image.format} image; the formats taken are {', '.join(sorted(formats))}",
                                       image_format=image.format)
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLarge(
                    f"the image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), "
                    f"over the limit of {max_pixels / 1e6:g} megapixels"
                )
            image.load()
            return ImageInfo(width, height, image.format)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        raise ImageError(f"not a readable image ({error})") from error


def web_image_type(name: str) -> str | None:
    """The content type of a web image by its file name's extension (any case); None for any other name."""
    return _WEB_IMAGE_TYPES.get(PurePosixPath(name).suffix.lower())


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
