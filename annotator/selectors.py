"""Every read with a rule in it. All reads are scoped to the user's companies."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from annotator.models import Box, Company, Frame, Label, Prediction, Product
from inference.realgram import ShelfHistory


def companies_of(user) -> QuerySet[Company]:
    if user.is_superuser:
        return Company.objects.all()
    return Company.objects.filter(memberships__user=user)


def frames_for(user, *, status: str | None = None) -> QuerySet[Frame]:
    frames = Frame.objects.filter(company__in=companies_of(user)).select_related("camera__store", "shelf")
    if status:
        frames = frames.filter(status=status)
    return frames.order_by("camera__store__code", "camera__code", F("captured_at").asc(nulls_last=True), "pk")


def frame_for(user, *, frame_id: int) -> Frame:
    """The frame if the user may see it; 404 otherwise (never reveal another company's data)."""
    return get_object_or_404(frames_for(user), pk=frame_id)


@dataclass
class BoxView:
    box: Box
    prediction: Prediction | None
    label: Label | None
    suggestion: Product | None


def frame_boxes(*, frame: Frame) -> list[BoxView]:
    """Each box of the frame with its latest prediction, current label and suggested product, in a
    fixed number of queries whatever the box count."""
    boxes = frame.boxes.order_by("pk").prefetch_related(
        Prefetch("predictions", queryset=Prediction.objects.order_by("-created_at", "-pk"), to_attr="ordered_predictions"),
        Prefetch("labels", queryset=Label.objects.filter(is_current=True).select_related("product"), to_attr="current_labels"),
    )
    boxes = list(boxes)
    product_ids = {p.product_id for b in boxes for p in b.ordered_predictions[:1] if p.product_id}
    products = Product.objects.in_bulk(product_ids)
    views = []
    for box in boxes:
        prediction = box.ordered_predictions[0] if box.ordered_predictions else None
        views.append(BoxView(
            box=box,
            prediction=prediction,
            label=box.current_labels[0] if box.current_labels else None,
            suggestion=products.get(prediction.product_id) if prediction and prediction.product_id else None,
        ))
    return views


def products_for(user) -> QuerySet[Product]:
    return Product.objects.filter(company__in=companies_of(user)).select_related("category").order_by("name", "pk")


def shelf_history(*, shelf_id: int, before: datetime, window_days: float) -> ShelfHistory:
    """The shelf's current labels on frames taken in the window before ``before``, boxes normalised
    to their frames, in one query. Frames without a capture time cannot be placed and are left out."""
    rows = (
        Label.objects.filter(
            is_current=True, product__isnull=False, box__frame__shelf_id=shelf_id,
            box__frame__captured_at__lt=before, box__frame__captured_at__gte=before - timedelta(days=window_days),
        )
        .order_by("box_id")
        .values_list("product_id", "box__x", "box__y", "box__w", "box__h", "box__frame__width",
                     "box__frame__height", "box__frame__captured_at", "box__frame_id")
    )
    return ShelfHistory.from_rows([
        (product, (x / width, y / height, w / width, h / height), taken.timestamp(), frame)
        for product, x, y, w, h, width, height, taken, frame in rows
    ])
