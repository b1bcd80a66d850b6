"""S3 ingestion of camera frames by the key convention
``<company>/<store>/<camera>/<YYYYmmddTHHMMSS>.jpg`` (the camera sees one shelf, named after it).
Registering is idempotent: an object already registered, or the same image under another key, is
one frame. Every object looked at is recorded with its ETag, so a later poll downloads only what is
new or changed (a corrupt frame re-uploaded under the same key is picked up again). An object gone
between the listing and its download is reported and not recorded, so the next poll tries it again."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from datetime import UTC, datetime

from django.db import transaction

from annotator.models import Frame, IngestedObject
from annotator.services.frames import register_frame
from annotator.services.locations import get_or_create_company, get_or_create_shelf
from inference.images import ImageError

logger = logging.getLogger(__name__)

KEY_PATTERN = re.compile(
    r"^(?P<company>[^/]+)/(?P<store>[^/]+)/(?P<camera>[^/]+)/(?P<stamp>\d{8}T\d{6})\.(?:jpe?g|png)$", re.IGNORECASE
)


@dataclass(frozen=True)
class FrameKey:
    company: str
    store: str
    camera: str
    captured_at: datetime


@dataclass
class IngestReport:
    registered: list[int] = field(default_factory=list)
    already_known: int = 0
    ignored_keys: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def parse_key(key: str) -> FrameKey | None:
    """The frame's origin from its object key, or None when the key does not follow the convention.
    (A listing prefix only filters keys; the convention applies to the whole key.)"""
    match = KEY_PATTERN.match(key)
    if not match:
        return None
    try:
        captured_at = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return FrameKey(match["company"], match["store"], match["camera"], captured_at)


def ingest_s3(*, client, bucket: str, prefix: str = "", queue=None) -> IngestReport:
    """Register every new frame object under ``prefix`` and hand each new frame id to ``queue``
    (after commit). ``client`` is a boto3 S3 client."""
    report = IngestReport()
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        etags = {f"s3://{bucket}/{item['Key']}": item.get("ETag", "") for item in page.get("Contents", [])}
        seen = {uri: (etag, outcome) for uri, etag, outcome in
                IngestedObject.objects.filter(source_uri__in=etags).values_list("source_uri", "etag", "outcome")}
        registered = set(Frame.objects.filter(source_uri__in=etags).values_list("source_uri", flat=True))
        for uri, etag in etags.items():
            key = uri.removeprefix(f"s3://{bucket}/")
            if uri in registered:
                report.already_known += 1
                continue
            if uri in seen and seen[uri][0] == etag:
                report.already_known += seen[uri][1] == IngestedObject.Outcome.DUPLICATE
                continue
            origin = parse_key(key)
            if origin is None:
                report.ignored_keys.append(key)
                _record(uri, etag, IngestedObject.Outcome.IGNORED)
                continue
            try:
                data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except client.exceptions.NoSuchKey:
                logger.warning("%s was listed but is gone; the next poll tries it again", uri)
                report.missing.append(key)
                continue
            try:
                frame, created = _register(origin=origin, data=data, source_uri=uri)
            except ImageError as error:  # no image, or none this site takes (format, FRAME_MAX_PIXELS)
                logger.warning("%s is refused: %s", uri, error)
                report.unreadable.append(key)
                _record(uri, etag, IngestedObject.Outcome.UNREADABLE)
                continue
            _record(uri, etag, IngestedObject.Outcome.REGISTERED if created else IngestedObject.Outcome.DUPLICATE, frame)
            if created:
                report.registered.append(frame.pk)
                if queue is not None:
                    transaction.on_commit(lambda frame_id=frame.pk: queue(frame_id))
            else:
                report.already_known += 1
    return report


def _record(uri: str, etag: str, outcome: str, frame: Frame | None = None) -> None:
    IngestedObject.objects.update_or_create(source_uri=uri, defaults={"etag": etag, "outcome": outcome, "frame": frame})


@transaction.atomic
def _register(*, origin: FrameKey, data: bytes, source_uri: str) -> tuple[Frame, bool]:
    company = get_or_create_company(name=origin.company)
    shelf = get_or_create_shelf(
        company=company, store_code=origin.store, camera_code=origin.camera, shelf_code=origin.camera
    )
    return register_frame(company=company, shelf=shelf, data=data, captured_at=origin.captured_at, source_uri=source_uri,
                          original_name=PurePosixPath(source_uri).name)
