import hashlib
import json
from pathlib import Path, PurePosixPath

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotator.models import Box, Frame, Label, Product, SearchSpaceOutbox
from tests.coco_files import two_frames, write_coco

VAROL = Path(__file__).resolve().parents[3] / "shared" / "data" / "varol-shelves-dev"

pytestmark = pytest.mark.django_db


def checksum(path: Path) -> str:
    """What a frame is stored under (with its format's extension), whatever its file was called."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Frame, Box, Label, Product, SearchSpaceOutbox))


def test_import_creates_frames_boxes_labels_and_products(tmp_path, capsys):
    call_command("import_coco", str(two_frames(tmp_path)), company="acme")
    assert table_counts() == (2, 3, 3, 2, 3)
    frame = Frame.objects.get(checksum=checksum(tmp_path / "images" / "a.jpg"))
    assert frame.camera.store.company.name == "acme"
    assert {label.product.sku for label in Label.objects.filter(box__frame=frame)} == {"other-product", "brand-a"}
    assert all(label.action == Label.Action.IMPORTED for label in Label.objects.all())
    out = capsys.readouterr().out
    assert "1 images have no captured_at" in out


def test_missing_captured_at_orders_by_file_name(tmp_path):
    path = write_coco(tmp_path, [
        {"name": "c.jpg", "captured_at": None, "boxes": [(5, 5, 20, 20, 1)]},
        {"name": "a.jpg", "captured_at": None, "boxes": [(6, 5, 20, 20, 1)]},
        {"name": "b.jpg", "captured_at": None, "boxes": [(7, 5, 20, 20, 1)]},
    ])
    call_command("import_coco", str(path))
    imported = list(Frame.objects.order_by("pk").values_list("checksum", flat=True))
    assert imported == [checksum(tmp_path / "images" / name) for name in ("a.jpg", "b.jpg", "c.jpg")]


def test_the_same_images_twice_are_one_frame_each(tmp_path):
    path = two_frames(tmp_path)
    call_command("import_coco", str(path))
    call_command("import_coco", str(path))
    assert Frame.objects.count() == 2
    assert Box.objects.count() == 3


def test_without_labels_imports_boxes_waiting_for_suggestions(tmp_path):
    call_command("import_coco", str(two_frames(tmp_path)), without_labels=True)
    assert Box.objects.count() == 3
    assert Label.objects.count() == 0
    assert set(Frame.objects.values_list("status", flat=True)) == {Frame.Status.QUEUED}


def _broken(tmp_path: Path, problem: str) -> Path:
    path = two_frames(tmp_path)
    data = json.loads(path.read_text())
    if problem == "invalid json":
        path.write_text(path.read_text()[:-20])
    elif problem == "bbox outside":
        data["annotations"][1]["bbox"] = [300, 10, 40, 60]
        path.write_text(json.dumps(data))
    elif problem == "unknown category":
        data["annotations"][2]["category_id"] = 99
        path.write_text(json.dumps(data))
    elif problem == "unreadable image":
        (tmp_path / "images" / "b.jpg").write_bytes(b"this is not a jpeg")
    return path


@pytest.mark.parametrize("problem, expected", [
    ("invalid json", "invalid json"),
    ("bbox outside", "lies outside its image"),
    ("unknown category", "unknown category 99"),
    ("unreadable image", "not a readable image"),
])
def test_a_broken_file_exits_with_one_line_and_imports_nothing(tmp_path, problem, expected):
    call_command("import_coco", str(write_coco(tmp_path / "ok", [
        {"name": "z.jpg", "captured_at": None, "boxes": [(5, 5, 20, 20, 1)]}])))
    before = table_counts()
    path = _broken(tmp_path / "bad", problem)
    with pytest.raises(CommandError) as error:
        call_command("import_coco", str(path))
    message = str(error.value)
    assert expected in message
    assert "\n" not in message
    assert str(tmp_path / "bad") in message  # names the file
    assert table_counts() == before


def test_a_failure_while_writing_rolls_back_rows_and_files(tmp_path, monkeypatch, media_root):
    from annotator.services import coco as coco_service

    def explode(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(coco_service, "record_labels", explode)
    with pytest.raises(RuntimeError):
        call_command("import_coco", str(two_frames(tmp_path)))
    assert table_counts() == (0, 0, 0, 0, 0)
    assert not [p for p in Path(media_root).rglob("*") if p.is_file()]


def test_export_gives_the_same_boxes_and_categories_back(tmp_path):
    source = two_frames(tmp_path / "in")
    call_command("import_coco", str(source))
    call_command("export_coco", str(tmp_path / "out" / "annotations.json"))
    original, exported = json.loads(source.read_text()), json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert _boxes_by_image(original, source.parent) == _boxes_by_image(exported)
    assert [(c["name"], c["supercategory"]) for c in exported["categories"]] == [
        (c["name"], c["supercategory"]) for c in original["categories"]]
    for image in exported["images"]:
        assert (tmp_path / "out" / image["file_name"]).is_file()
    # What was exported imports again as the same dataset.
    assert exported["images"][0]["store"] == "store-1"


def _boxes_by_image(coco: dict, images_root: Path | None = None) -> list:
    """Boxes keyed by their image's checksum: read from the files under ``images_root``, or, for an
    export, the stored name the export keeps (``<checksum>.<extension>``)."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {i["id"]: checksum(images_root / i["file_name"]) if images_root else PurePosixPath(i["file_name"]).stem
             for i in coco["images"]}
    return sorted((files[a["image_id"]], tuple(round(v, 2) for v in a["bbox"]), names[a["category_id"]])
                  for a in coco["annotations"])


@pytest.mark.skipif(not VAROL.is_dir(), reason="needs ../shared/data/varol-shelves-dev")
def test_varol_dev_set_round_trips(tmp_path):
    call_command("import_coco", str(VAROL), company="varol")
    assert Frame.objects.count() == 228
    assert Box.objects.count() == 8284
    call_command("export_coco", str(tmp_path / "annotations.json"), company="varol", no_images=True)
    exported = json.loads((tmp_path / "annotations.json").read_text())
    original = json.loads((VAROL / "annotations.json").read_text())
    assert _boxes_by_image(exported) == _boxes_by_image(original, VAROL)


@pytest.mark.django_db(transaction=True)
def test_a_long_import_commits_every_few_frames_and_a_rerun_imports_the_rest(tmp_path, monkeypatch, media_root):
    """SQLite's write lock is the transaction's: other processes (the web) see and write between
    chunks. A failure keeps the chunks before it; running the import again skips them."""
    import threading

    from django.db import connection

    from annotator.coco import load_coco
    from annotator.services import coco as coco_service
    from annotator.services.locations import get_or_create_company

    path = write_coco(tmp_path, [{"name": f"{index}.jpg", "captured_at": f"2024-01-01T1{index}:00:00",
                                  "boxes": [(5 + index, 5, 20, 20, 1)]} for index in range(3)])
    dataset, company = load_coco(path), get_or_create_company(name="acme")
    record_labels, seen_elsewhere = coco_service.record_labels, []

    def count_from_another_connection() -> int:
        counts = []

        def read() -> None:
            try:
                counts.append(Frame.objects.count())
            finally:
                connection.close()

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(30)
        return counts[0]

    def third_frame_fails(**kwargs):
        seen_elsewhere.append(count_from_another_connection())
        if len(seen_elsewhere) == 3:
            raise RuntimeError("disk full")
        return record_labels(**kwargs)

    monkeypatch.setattr(coco_service, "record_labels", third_frame_fails)
    with pytest.raises(RuntimeError, match="disk full"):
        coco_service.import_coco(dataset=dataset, company=company, frames_per_transaction=1)
    assert seen_elsewhere == [0, 1, 2]  # each frame committed before the next one was written
    assert Frame.objects.count() == 2 and Label.objects.count() == 2
    assert len([p for p in Path(media_root).rglob("*") if p.is_file()]) == 2  # the failed frame's file is gone

    monkeypatch.undo()
    report = coco_service.import_coco(dataset=dataset, company=company, frames_per_transaction=1)
    assert (report.frames_created, report.frames_skipped) == (1, 2)
    assert table_counts() == (3, 3, 3, 2, 3)
