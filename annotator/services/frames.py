"""Registering frames: the same image (by content) or the same source object is one frame."""
from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import PurePosixPath

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from annotator.models import Company, Frame, Shelf
from inference.images import image_size


def checksum_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def register_frame(
    *,
    company: Company,
    shelf: Shelf,
    data: bytes,
    file_name: str,
    captured_at: datetime | None,
    source_uri: str = "",
    status: str = Frame.Status.QUEUED,
) -> tuple[Frame, bool]:
    """Store the image and create its Frame; returns (frame, created). An image already known to the
    company (same bytes) or a source already registered returns the existing frame untouched.
    Raises ``inference.images.ImageError`` when the bytes are not an image."""
    checksum = checksum_of(data)
    existing = Frame.objects.filter(company=company, checksum=checksum).first()
    if existing is None and source_uri:
        existing = Frame.objects.filter(source_uri=source_uri).first()
    if existing is not None:
        return existing, False
    width, height = image_size(data)
    frame = Frame(
        company=company,
        camera=shelf.camera,
        shelf=shelf,
        captured_at=captured_at,
        checksum=checksum,
        source_uri=source_uri,
        width=width,
        height=height,
        status=status,
    )
    frame.image.save(PurePosixPath(file_name).name, ContentFile(data), save=False)
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


def set_status(*, frame: Frame, status: str, reason: str = "") -> None:
    frame.status = status
    frame.status_reason = reason
    frame.save(update_fields=["status", "status_reason", "updated_at"])


def upload_frame(*, shelf: Shelf, data: bytes, file_name: str, captured_at: datetime | None) -> tuple[Frame, bool]:
    """A photo of a shelf sent through the API (a camera without S3, or a person's phone): registered
    like an ingested frame and queued for pre-labelling after commit. Returns (frame, created); the
    same image twice is one frame. Raises ``inference.images.ImageError`` for bytes that are no image."""
    from annotator.services.prelabel import queue_prelabelling

    company = shelf.camera.store.company
    with transaction.atomic():
        frame, created = register_frame(company=company, shelf=shelf, data=data, file_name=file_name,
                                        captured_at=captured_at)
        if created:
            transaction.on_commit(lambda: queue_prelabelling(frame_id=frame.pk))
    return frame, created
