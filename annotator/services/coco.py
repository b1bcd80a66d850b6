"""COCO in and out. A dataset is validated before anything is written (``annotator.coco.load_coco``),
so a bad file imports nothing; it is then written in transactions of ``FRAMES_PER_TRANSACTION``
frames, so a long import never holds SQLite's write lock longer than the web waits for it."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from django.db import transaction
from django.db.models import Prefetch

from annotator.coco import CocoDataset, CocoError, CocoImage
from annotator.models import Box, Category, Company, Frame, Label, Product
from annotator.services.frames import register_frame
from annotator.services.labels import Decision, record_labels
from annotator.services.locations import get_or_create_shelf
from inference.images import ImageError

FRAMES_PER_TRANSACTION = 50


@dataclass
class ImportReport:
    frames_created: int = 0
    frames_skipped: int = 0
    boxes: int = 0
    labels: int = 0
    products_created: int = 0
    missing_captured_at: int = 0
    frame_ids: list[int] = field(default_factory=list)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def products_for_categories(*, company: Company, dataset: CocoDataset) -> tuple[dict[int, Product], int]:
    """Each COCO category is a product of the company, matched by sku (= category name)."""
    products: dict[int, Product] = {}
    created_count = 0
    for category in sorted(dataset.categories.values(), key=lambda c: c.id):
        product_category = None
        if category.supercategory:
            product_category, _ = Category.objects.get_or_create(company=company, name=category.supercategory)
        product, created = Product.objects.get_or_create(
            company=company, sku=category.name, defaults={"name": category.name, "category": product_category}
        )
        created_count += created
        products[category.id] = product
    return products, created_count


def import_coco(*, dataset: CocoDataset, company: Company, with_labels: bool = True,
                frames_per_transaction: int = FRAMES_PER_TRANSACTION) -> ImportReport:
    """Register the dataset's frames (in replay order) with their boxes; annotations with a category
    become imported labels unless ``with_labels`` is False (the boxes then stand for detections
    waiting for suggestions). Frames already known (same image bytes) are skipped, so after a
    failure while writing (the transactions before it are kept) a re-run imports the rest."""
    report = ImportReport(missing_captured_at=dataset.missing_captured_at)
    images = dataset.in_replay_order()
    products: dict[int, Product] = {}
    for start in range(0, max(len(images), 1), frames_per_transaction):
        stored: list[Frame] = []
        try:
            with transaction.atomic():
                if start == 0:  # with the first frames: a failure there leaves no product behind
                    products, report.products_created = products_for_categories(company=company, dataset=dataset)
                for coco_image in images[start : start + frames_per_transaction]:
                    _import_image(coco_image, company=company, products=products, with_labels=with_labels,
                                  report=report, stored=stored)
        except BaseException:
            for frame in stored:  # this transaction's rows are rolled back; its stored files must go too
                frame.image.delete(save=False)
            raise
    return report


def _import_image(coco_image: CocoImage, *, company: Company, products: dict[int, Product], with_labels: bool,
                  report: ImportReport, stored: list[Frame]) -> None:
    """Register one image with its boxes and labels (a frame already known is skipped); a new
    frame goes into ``stored`` as soon as its file is written."""
    shelf = get_or_create_shelf(
        company=company, store_code=coco_image.store, camera_code=coco_image.camera, shelf_code=coco_image.shelf
    )
    try:
        frame, created = register_frame(
            company=company,
            shelf=shelf,
            data=coco_image.path.read_bytes(),
            original_name=coco_image.file_name,
            captured_at=_aware(coco_image.captured_at),
            status=Frame.Status.LABELLED if with_labels and coco_image.boxes else Frame.Status.QUEUED,
        )
    except ImageError as error:  # a dataset loaded without check_images: the transactions before this one stay
        raise CocoError(f"{coco_image.path}: {error}") from None
    if not created:
        report.frames_skipped += 1
        return
    stored.append(frame)
    report.frames_created += 1
    report.frame_ids.append(frame.pk)
    boxes = Box.objects.bulk_create(
        Box(frame=frame, x=b.bbox[0], y=b.bbox[1], w=b.bbox[2], h=b.bbox[3], source=Box.Source.IMPORTED)
        for b in coco_image.boxes
    )
    report.boxes += len(boxes)
    if with_labels:
        decisions = [
            Decision(box=box, product=products[coco_box.category_id], action=Label.Action.IMPORTED)
            for box, coco_box in zip(boxes, coco_image.boxes)
            if coco_box.category_id is not None
        ]
        record_labels(decisions=decisions)
        report.labels += len(decisions)


def export_coco(*, company: Company, path: Path, copy_images: bool = True) -> dict:
    """Write the company's frames and their current labels as a COCO shelf dataset at ``path``
    (images copied beside it under ``images/``). Returns the written dict."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    products = list(Product.objects.filter(company=company).select_related("category").order_by("pk"))
    category_ids = {product.pk: index for index, product in enumerate(products, start=1)}
    current = Label.objects.filter(is_current=True, product__isnull=False)
    frames = (
        Frame.objects.filter(company=company)
        .select_related("camera__store", "shelf")
        .prefetch_related(Prefetch("boxes__labels", queryset=current, to_attr="current_labels"))
        .order_by("camera__store__code", "camera__code", "captured_at", "pk")
    )
    images, annotations = [], []
    used_names: set[str] = set()
    for frame in frames:
        name = PurePosixPath(frame.image.name).name
        if name in used_names:
            name = f"{frame.pk}-{name}"
        used_names.add(name)
        file_name = f"images/{name}"
        if copy_images:
            (path.parent / "images").mkdir(exist_ok=True)
            with frame.image.open("rb") as source, open(path.parent / file_name, "wb") as target:
                shutil.copyfileobj(source, target)
        images.append({
            "id": frame.pk, "file_name": file_name, "width": frame.width, "height": frame.height,
            "captured_at": frame.captured_at.replace(tzinfo=None).isoformat() if frame.captured_at else None,
            "store": frame.camera.store.code, "camera": frame.camera.code, "shelf": frame.shelf.code,
        })
        for box in frame.boxes.all():
            if not box.current_labels:
                continue
            annotations.append({
                "id": box.pk, "image_id": frame.pk, "category_id": category_ids[box.current_labels[0].product_id],
                "bbox": [box.x, box.y, box.w, box.h], "area": box.w * box.h, "iscrowd": 0,
            })
    data = {
        "info": {"description": f"Exported from the shelf annotator for {company.name}",
                 "date_created": datetime.now(UTC).isoformat(timespec="seconds")},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": category_ids[p.pk], "name": p.sku, "supercategory": p.category.name if p.category else ""}
            for p in products
        ],
    }
    path.write_text(json.dumps(data, indent=1))
    return data
