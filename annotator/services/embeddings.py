"""Crop embeddings kept per box and embedder version (``BoxEmbedding``, float16): pre-labelling
stores them, and tracking, the search space and the label-noise review read them back instead of
decoding frames and embedding the crops again."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from annotator import engines, selectors
from annotator.models import Box, BoxEmbedding, Frame, Label, ModelVersion
from inference.images import open_image
from inference.search_space import CropPoint


def current_embedder_version(pipeline=None) -> ModelVersion:
    """The ModelVersion row of ``pipeline``'s embedder (the base pipeline's by default)."""
    embedder = (pipeline or engines.pipeline()).embedder
    version, _ = ModelVersion.objects.get_or_create(
        kind=ModelVersion.Kind.EMBEDDER, name=embedder.name, defaults={"config": {"dim": embedder.dim}})
    return version


def store_embeddings(*, boxes: Sequence[Box], vectors: np.ndarray, embedder_version: ModelVersion) -> None:
    """Keep each box's embedding; storing a box again replaces its row (an upsert: two processes
    embedding the same crop at once, a pre-labelling and a collection build, both succeed)."""
    BoxEmbedding.objects.bulk_create(
        [BoxEmbedding(box=box, embedder=embedder_version, vector=np.asarray(vector, np.float16).tobytes())
         for box, vector in zip(boxes, vectors)],
        update_conflicts=True, unique_fields=["box", "embedder"], update_fields=["vector"],
    )


def crop_vectors(*, frame: Frame, boxes: Sequence[Box], embedder_version: ModelVersion, pipeline=None) -> np.ndarray:
    """The embeddings of ``boxes`` of ``frame`` (one row each, in order): those stored, and the
    rest embedded from the frame's image by ``pipeline`` (the base one by default) in one batch and stored."""
    pipeline = pipeline or engines.pipeline()
    known = selectors.stored_vectors(box_ids=[box.pk for box in boxes], embedder_version=embedder_version)
    missing = [box for box in boxes if box.pk not in known]
    if missing:
        with frame.image.open("rb") as handle:
            image = open_image(handle.read())
        fresh = pipeline.embed_boxes(image, [box.bbox for box in missing])
        store_embeddings(boxes=missing, vectors=fresh, embedder_version=embedder_version)
        known.update((box.pk, np.asarray(vector, np.float16).astype(np.float32)) for box, vector in zip(missing, fresh))
    if not boxes:
        return np.zeros((0, pipeline.embedder.dim), np.float32)
    return np.stack([known[box.pk] for box in boxes])


def crop_points(*, box_ids: Sequence[int], pipeline=None, embedder_version=None) -> list[CropPoint]:
    """Embed the labelled boxes (one batch per frame) with ``pipeline``'s embedder (the base one by
    default) and return them as search-space points."""
    labels = (
        Label.objects.filter(box_id__in=box_ids, is_current=True, product__isnull=False)
        .select_related("box__frame__camera", "product")
        .order_by("box__frame_id", "box_id")
    )
    by_frame: dict[int, list[Label]] = defaultdict(list)
    for label in labels:
        by_frame[label.box.frame_id].append(label)
    points: list[CropPoint] = []
    if by_frame and embedder_version is None:
        embedder_version = current_embedder_version(pipeline)
    for frame_labels in by_frame.values():
        frame: Frame = frame_labels[0].box.frame
        # Pre-labelling stored most crops' embeddings; only boxes drawn by hand are embedded here.
        vectors = crop_vectors(frame=frame, boxes=[label.box for label in frame_labels],
                               embedder_version=embedder_version, pipeline=pipeline)
        points.extend(
            CropPoint(
                box_id=label.box_id,
                vector=vector,
                product_id=label.product_id,
                frame_id=frame.pk,
                company_id=frame.company_id,
                store_id=frame.camera.store_id,
                shelf_id=frame.shelf_id,
                category_id=label.product.category_id,
                annotated_at=frame.captured_at or label.created_at,
            )
            for label, vector in zip(frame_labels, vectors)
        )
    return points
