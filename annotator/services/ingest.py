"""S3 ingestion of camera frames by the key convention
``<company>/<store>/<camera>/<YYYYmmddTHHMMSS>.jpg`` (the camera sees one shelf, named after it).
Registering is idempotent: an object already registered, or the same image under another key, is
one frame."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import transaction

from annotator.models import Frame
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
        keys = [item["Key"] for item in page.get("Contents", [])]
        uris = {key: f"s3://{bucket}/{key}" for key in keys}
        known = set(Frame.objects.filter(source_uri__in=uris.values()).values_list("source_uri", flat=True))
        for key in keys:
            if uris[key] in known:
                report.already_known += 1
                continue
            origin = parse_key(key)
            if origin is None:
                report.ignored_keys.append(key)
                continue
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            try:
                frame, created = _register(origin=origin, data=data, key=key, source_uri=uris[key])
            except ImageError as error:
                logger.warning("s3://%s/%s is not a readable image: %s", bucket, key, error)
                report.unreadable.append(key)
                continue
            if created:
                report.registered.append(frame.pk)
                if queue is not None:
                    transaction.on_commit(lambda frame_id=frame.pk: queue(frame_id))
            else:
                report.already_known += 1
    return report


@transaction.atomic
def _register(*, origin: FrameKey, data: bytes, key: str, source_uri: str) -> tuple[Frame, bool]:
    company = get_or_create_company(name=origin.company)
    shelf = get_or_create_shelf(
        company=company, store_code=origin.store, camera_code=origin.camera, shelf_code=origin.camera
    )
    return register_frame(
        company=company, shelf=shelf, data=data, file_name=key.rsplit("/", 1)[-1],
        captured_at=origin.captured_at, source_uri=source_uri,
    )
