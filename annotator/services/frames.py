"""Registering frames: the same image (by content) or the same source object is one frame."""
from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from annotator.models import Company, Frame, Shelf
from annotator.services import frame_states, prelabel_queue
from annotator.text import with_article
from inference.images import WEB_IMAGE_FORMATS, ImageFormatError, ImageInfo, ImageTooLarge, inspect_image


def checksum_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_frame_image(source: bytes | str | Path) -> ImageInfo:
    """What a frame must be before anything of it is decoded or stored: a JPEG, PNG or WebP of at
    most FRAME_MAX_PIXELS. Raises ``inference.images.ImageError`` (``ImageTooLarge`` for the pixels)."""
    try:
        return inspect_image(source, max_pixels=settings.FRAME_MAX_PIXELS, formats=WEB_IMAGE_FORMATS)
    except ImageFormatError as error:
        raise ImageFormatError(f"{with_article(error.image_format or 'unknown')} image; frames must be JPEG, PNG or WebP",
                               image_format=error.image_format) from None
    except ImageTooLarge as error:
        raise ImageTooLarge(f"{error} (FRAME_MAX_PIXELS)") from None


def register_frame(
    *,
    company: Company,
    shelf: Shelf,
    data: bytes,
    captured_at: datetime | None,
    source_uri: str = "",
    original_name: str = "",
    status: str = Frame.Status.QUEUED,
) -> tuple[Frame, bool]:
    """Store the image and create its Frame; returns (frame, created). An image already known to the
    company (same bytes) or a source already registered returns the existing frame untouched.
    Raises ``inference.images.ImageError`` when the bytes are no frame (see ``check_frame_image``).

    The stored name is the server's, ``<checksum>.<extension of the decoded format>``, never the
    sender's: media are served with the content type of their extension, so a name like
    ``poc.html`` on a JPEG that carries a script would otherwise be served as a page of this site."""
    checksum = checksum_of(data)
    existing = Frame.objects.filter(company=company, checksum=checksum).first()
    if existing is None and source_uri:
        existing = Frame.objects.filter(source_uri=source_uri).first()
    if existing is not None:
        return existing, False
    info = check_frame_image(data)
    extension, content_type = WEB_IMAGE_FORMATS[info.format]
    frame = Frame(
        company=company,
        camera=shelf.camera,
        shelf=shelf,
        captured_at=captured_at,
        checksum=checksum,
        source_uri=source_uri,
        original_name=original_name[-255:],
        width=info.width,
        height=info.height,
        status=status,
    )
    content = ContentFile(data)
    content.content_type = content_type  # S3 stores it as the object's Content-Type
    frame.image.save(f"{checksum}.{extension}", content, save=False)
    try:
        with transaction.atomic():
            frame.save()
    except IntegrityError:
        frame.image.delete(save=False)
        # Another worker registered the same image meanwhile: theirs stands, ours is discarded.
        existing = Frame.objects.filter(company=company, checksum=checksum).first()
        if existing is None and source_uri:
            existing = Frame.objects.filter(source_uri=source_uri).first()
        if existing is None:
            raise
        return existing, False
    return frame, True


def set_status(*, frame: Frame, status: str, reason: str = "") -> bool:
    """Move the frame to ``status`` from whichever state it is in, if ``frame_states`` allows that
    change (a conditional update). Returns whether it moved; the instance follows only if it did."""
    moved = frame_states.change(frame_id=frame.pk, to=status, status_reason=reason)
    if moved:
        frame.status, frame.status_reason = status, reason
    return moved


def upload_frame(*, shelf: Shelf, data: bytes, captured_at: datetime | None, file_name: str) -> tuple[Frame, bool]:
    """A photo of a shelf sent through the API (a camera without S3, or a person's phone): registered
    like an ingested frame and queued for pre-labelling after commit. Returns (frame, created); the
    same image twice is one frame. Raises ``inference.images.ImageError`` for bytes that are no frame.
    ``file_name`` is the sender's: kept as the frame's original name, never as a stored path."""
    company = shelf.camera.store.company
    with transaction.atomic():
        frame, created = register_frame(company=company, shelf=shelf, data=data, captured_at=captured_at,
                                        original_name=PurePosixPath(file_name).name)
        if created:
            transaction.on_commit(lambda: prelabel_queue.queue_prelabelling(frame_id=frame.pk))
    return frame, created
