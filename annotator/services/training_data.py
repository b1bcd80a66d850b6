"""Training data from the app's own labels: every current label of a company as a crop to train the
embedder on. Frames stored in S3 are downloaded once into a local cache, since training reads files."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from annotator.models import Company, Frame, Label
from inference.embedder_training import TrainingSample


def local_image(*, frame: Frame, cache_dir: Path) -> Path:
    """A local path to the frame's image: the stored file itself on local disk, else a cached copy."""
    try:
        return Path(frame.image.path)
    except NotImplementedError:  # remote storage (S3) has no local path
        target = cache_dir / f"frame-{frame.pk}{PurePosixPath(frame.image.name).suffix}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with frame.image.open("rb") as source:
                partial = target.with_name(target.name + ".part")
                partial.write_bytes(source.read())
                partial.replace(target)
        return target


def labelled_crops(*, company: Company, cache_dir: Path, exclude_skus: Sequence[str] = ()) -> list[TrainingSample]:
    """One sample per box with a current label of the company: label = product id, category = the
    product's category. ``exclude_skus`` leaves out catch-all classes such as "other-product", which
    make poor ArcFace classes (a mixed bag of products)."""
    labels = (
        Label.objects.filter(is_current=True, product__isnull=False, box__frame__company=company)
        .exclude(product__sku__in=list(exclude_skus))
        .select_related("box__frame", "product")
        .order_by("box__frame_id", "box_id")
    )
    paths: dict[int, Path] = {}
    samples = []
    for label in labels:
        frame = label.box.frame
        if frame.pk not in paths:
            paths[frame.pk] = local_image(frame=frame, cache_dir=cache_dir)
        samples.append(TrainingSample(paths[frame.pk], label.box.bbox, label.product_id, company.pk,
                                      label.product.category_id))
    return samples
