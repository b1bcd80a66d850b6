"""Crop embeddings kept per box and embedder version (``BoxEmbedding``, float16): pre-labelling
stores them, and tracking, the search space and the label-noise review read them back instead of
decoding frames and embedding the crops again."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from annotator import engines, selectors
from annotator.models import Box, BoxEmbedding, Frame, ModelVersion
from inference.images import open_image


def current_embedder_version() -> ModelVersion:
    embedder = engines.pipeline().embedder
    version, _ = ModelVersion.objects.get_or_create(
        kind=ModelVersion.Kind.EMBEDDER, name=embedder.name, defaults={"config": {"dim": embedder.dim}})
    return version


def store_embeddings(*, boxes: Sequence[Box], vectors: np.ndarray, embedder_version: ModelVersion) -> None:
    """Keep each box's embedding; storing a box again replaces its row."""
    BoxEmbedding.objects.filter(box__in=boxes, embedder=embedder_version).delete()
    BoxEmbedding.objects.bulk_create(
        BoxEmbedding(box=box, embedder=embedder_version, vector=np.asarray(vector, np.float16).tobytes())
        for box, vector in zip(boxes, vectors)
    )


def crop_vectors(*, frame: Frame, boxes: Sequence[Box], embedder_version: ModelVersion) -> np.ndarray:
    """The embeddings of ``boxes`` of ``frame`` (one row each, in order): those stored, and the
    rest embedded from the frame's image in one batch and stored."""
    known = selectors.stored_vectors(box_ids=[box.pk for box in boxes], embedder_version=embedder_version)
    missing = [box for box in boxes if box.pk not in known]
    if missing:
        with frame.image.open("rb") as handle:
            image = open_image(handle.read())
        fresh = engines.pipeline().embed_boxes(image, [box.bbox for box in missing])
        store_embeddings(boxes=missing, vectors=fresh, embedder_version=embedder_version)
        known.update((box.pk, np.asarray(vector, np.float16).astype(np.float32)) for box, vector in zip(missing, fresh))
    if not boxes:
        return np.zeros((0, engines.pipeline().embedder.dim), np.float32)
    return np.stack([known[box.pk] for box in boxes])
