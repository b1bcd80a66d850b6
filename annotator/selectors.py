"""Every read with a rule in it. All reads are scoped to the user's companies."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncDate, TruncWeek
from django.shortcuts import get_object_or_404

from annotator.models import (
    Box,
    BoxEmbedding,
    Company,
    Frame,
    Label,
    LearningRound,
    ModelSet,
    ModelVersion,
    PipelineVersion,
    Prediction,
    Product,
    ProductImage,
    Shelf,
)
from annotator.permissions import LABELLERS, companies_with_role
from inference.label_noise import NoiseConfig, confusable_pairs, rank_products, score_label_noise
from inference.realgram import ShelfHistory
from inference.stats import wilson_interval


def companies_of(user) -> QuerySet[Company]:
    if user.is_superuser:
        return Company.objects.all()
    return Company.objects.filter(memberships__user=user)


def may_see_media(user, *, name: str) -> bool:
    """Whether the stored file ``name`` is a frame or product image of the user's companies."""
    companies = companies_of(user)
    return (Frame.objects.filter(company__in=companies, image=name).exists()
            or ProductImage.objects.filter(product__company__in=companies, image=name).exists())


def shelves_for(user) -> QuerySet[Shelf]:
    return Shelf.objects.filter(camera__store__company__in=companies_of(user)).select_related("camera__store__company")


def frames_for(user, *, status: str | None = None) -> QuerySet[Frame]:
    frames = Frame.objects.filter(company__in=companies_of(user)).select_related("company", "camera__store", "shelf", "leased_by")
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
        Prefetch("predictions", queryset=Prediction.objects.select_related("pipeline_version").order_by("-created_at", "-pk"),
                 to_attr="ordered_predictions"),
        Prefetch("labels", queryset=Label.objects.filter(is_current=True).select_related("product"), to_attr="current_labels"),
    )
    boxes = list(boxes)
    product_ids = {p.product_id for b in boxes for p in b.ordered_predictions[:1] if p.product_id}
    products = with_thumbnails(Product.objects.all()).in_bulk(product_ids)
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


def with_thumbnails(products: QuerySet[Product]) -> QuerySet[Product]:
    return products.select_related("category").prefetch_related(
        Prefetch("images", queryset=ProductImage.objects.order_by("-is_primary", "pk")))


def products_for(user) -> QuerySet[Product]:
    return with_thumbnails(Product.objects.filter(company__in=companies_of(user))).order_by("name", "pk")


class NoCompanyToLabelFor(ValueError):
    """The request does not say, or names wrongly, the company the user labels for (a 400)."""


def company_to_label_for(user, *, company_id: int | None) -> Company:
    """The company in which the user labels and means to act: ``company_id`` when given (it must be one
    of those), else their only such company. Raises NoCompanyToLabelFor with the reason."""
    companies = companies_with_role(user, *LABELLERS).distinct().order_by("pk")
    if company_id is not None:
        company = companies.filter(pk=company_id).first()
        if company is None:
            raise NoCompanyToLabelFor(f"company {company_id} is not one you label for")
        return company
    found = list(companies[:2])
    if len(found) != 1:
        raise NoCompanyToLabelFor("you label for several companies: say which (company)" if found
                                  else "you label for no company")
    return found[0]


def search_products(user, *, query: str = "", store_id: int | None = None, limit: int = 20) -> list[Product]:
    """Type-ahead over the user's catalogue: names containing the query or skus starting with it,
    the store's assortment (products labelled in that store) first, then by name."""
    products = Product.objects.filter(company__in=companies_of(user))
    if query:
        products = products.filter(Q(name__icontains=query) | Q(sku__istartswith=query))
    if store_id is not None:
        in_store = Label.objects.filter(product=OuterRef("pk"), is_current=True, box__frame__camera__store_id=store_id)
        products = products.annotate(in_store=Exists(in_store)).order_by("-in_store", "name", "pk")
    else:
        products = products.order_by("name", "pk")
    return list(with_thumbnails(products)[:limit])


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


def products_of_boxes(views: list[BoxView]) -> list[Product]:
    """Every product a frame's boxes mention (candidates, suggestions, labels), in one query."""
    ids = {c["product_id"] for view in views if view.prediction for c in view.prediction.candidates}
    ids |= {view.label.product_id for view in views if view.label and view.label.product_id}
    return list(with_thumbnails(Product.objects.filter(pk__in=ids)).order_by("pk"))


@dataclass
class PreviousFrameState:
    """What the camera's frame before another showed and what was decided about each of its boxes:
    a person's current label where there is one (``confirmed``; -1 for a box deleted as no product),
    else the top-1 of its latest prediction."""

    frame: Frame
    boxes: list[Box]
    product_ids: list[int]
    confirmed: list[bool]


@dataclass(frozen=True)
class GateReference:
    """One of the camera's recent accepted frames, as the quality gate compares a frame with it."""

    signature: dict
    boxes: int


def gate_references(*, frame: Frame, limit: int) -> list[GateReference]:
    """The camera's latest ``limit`` accepted frames (pre-labelled or labelled, with the gate's
    signature) of the frame's size, taken before ``frame`` (any, for an untimed frame), newest
    first, with their box counts, in one query. Another size is another view (a camera set up
    again, a photo turned), which the occlusion check must not compare with."""
    accepted = Frame.objects.filter(camera_id=frame.camera_id, status__in=[Frame.Status.READY, Frame.Status.LABELLED],
                                    quality_signature__isnull=False, width=frame.width,
                                    height=frame.height).exclude(pk=frame.pk)
    if frame.captured_at is not None:
        accepted = accepted.filter(captured_at__lt=frame.captured_at)
    rows = (accepted.annotate(box_count=Count("boxes")).order_by(F("captured_at").desc(nulls_last=True), "-pk")
            .values_list("quality_signature", "box_count")[:limit])
    return [GateReference(signature, boxes) for signature, boxes in rows]


def previous_frame_state(*, frame: Frame) -> PreviousFrameState | None:
    """The camera's latest frame taken before ``frame`` that was pre-labelled or labelled, with its
    decided boxes, in a fixed number of queries. None for a camera's first frame or an untimed one."""
    if frame.captured_at is None:
        return None
    previous = (
        Frame.objects.filter(camera_id=frame.camera_id, captured_at__lt=frame.captured_at,
                             status__in=[Frame.Status.READY, Frame.Status.LABELLED])
        .order_by("-captured_at", "-pk").first()
    )
    if previous is None:
        return None
    views = frame_boxes(frame=previous)
    boxes, product_ids, confirmed = [], [], []
    for view in views:
        if view.label is not None:
            boxes.append(view.box)
            product_ids.append(view.label.product_id if view.label.product_id is not None else -1)
            confirmed.append(True)
        elif view.prediction is not None:
            boxes.append(view.box)
            product_ids.append(view.prediction.product_id if view.prediction.product_id is not None else -1)
            confirmed.append(False)
    return PreviousFrameState(previous, boxes, product_ids, confirmed)


# ---------------------------------------------------------------- reports

REPORT_GROUPS = {
    "day": TruncDate("created_at"),
    "week": TruncDate(TruncWeek("created_at")),  # the Monday the week starts on
    "pipeline": F("suggested_by__name"),
    "store": F("box__frame__camera__store__code"),
    "camera": F("box__frame__camera__code"),
    "category": F("suggested_product__category__name"),
    "product": F("suggested_product__name"),
    "annotator": F("annotator__username"),
}
WORKSPACE_ACTIONS = (Label.Action.CONFIRMED, Label.Action.CORRECTED, Label.Action.ADDED, Label.Action.DELETED)


@dataclass(frozen=True)
class ConfirmRateRow:
    """One group of annotators' decisions. ``confirm_rate``: confirmed / (confirmed + corrected), the
    share of suggestions left unchanged (None without any); added and deleted boxes are counted
    apart. ``changed_later``: confirmed suggestions whose box a later decision (QA) gave another
    product or removed."""

    group: str
    confirmed: int
    corrected: int
    added: int
    deleted: int
    changed_later: int
    seconds: float
    period: date | None = None
    auto_accepted: int = 0  # auto-accepted suggestions kept on submit, not in ``confirmed``
    reviewed: int = 0  # of those, boxes a QA lead reviewed afterwards

    @property
    def suggested(self) -> int:
        return self.confirmed + self.corrected

    @property
    def boxes(self) -> int:
        return self.confirmed + self.corrected + self.added + self.deleted

    @property
    def confirm_rate(self) -> float | None:
        return self.confirmed / self.suggested if self.suggested else None

    @property
    def changed_later_rate(self) -> float | None:
        return self.changed_later / self.confirmed if self.confirmed else None

    @property
    def seconds_per_box(self) -> float | None:
        return self.seconds / self.boxes if self.boxes and self.seconds else None

    @property
    def boxes_per_hour(self) -> float | None:
        return 3600 * self.boxes / self.seconds if self.seconds else None

    def as_dict(self) -> dict:
        return {"group": self.group, "boxes": self.boxes, "suggested": self.suggested, "confirmed": self.confirmed,
                "corrected": self.corrected, "added": self.added, "deleted": self.deleted,
                "confirm_rate": self.confirm_rate, "changed_later": self.changed_later,
                "changed_later_rate": self.changed_later_rate, "seconds_per_box": self.seconds_per_box,
                "boxes_per_hour": self.boxes_per_hour, "auto_accepted": self.auto_accepted,
                "reviewed": self.reviewed}


def confirm_rate_by(user, *, by: str, start: date | None = None, end: date | None = None,
                    over: str | None = None) -> list[ConfirmRateRow]:
    """Each box's first decision by a person (imports left out; a later one, a QA lead's review,
    shows as ``changed_later`` of the first) on the user's companies' frames, grouped ``by`` one of
    ``REPORT_GROUPS``, decided from ``start`` to ``end`` (days, inclusive); with ``over`` ("day" or
    "week") each group is split by period, as ``period`` on the rows. One query whatever the number
    of labels."""
    if by not in REPORT_GROUPS:
        raise ValueError(f"unknown grouping {by!r}; one of {', '.join(REPORT_GROUPS)}")
    if over not in (None, "day", "week"):
        raise ValueError(f"unknown period {over!r}; day or week")
    decisions = Label.objects.filter(action__in=WORKSPACE_ACTIONS, annotator__isnull=False)
    earlier = decisions.filter(box=OuterRef("box"), pk__lt=OuterRef("pk"))
    # The box's label now says another product than this decision did (or the box was removed).
    changed = Label.objects.filter(box=OuterRef("box"), is_current=True).exclude(product=OuterRef("product"))
    qa_later = Label.objects.filter(box=OuterRef("box"), pk__gt=OuterRef("pk"),
                                    action__in=(Label.Action.REVIEWED, Label.Action.REMOVED))
    labels = (decisions.filter(box__frame__company__in=companies_of(user)).exclude(Exists(earlier))
              .annotate(changed_since=Exists(changed), reviewed_since=Exists(qa_later)))
    if start is not None:
        labels = labels.filter(created_at__date__gte=start)
    if end is not None:
        labels = labels.filter(created_at__date__lte=end)
    auto = Q(action=Label.Action.CONFIRMED, auto_accepted=True)
    confirmed = Q(action=Label.Action.CONFIRMED, auto_accepted=False)
    keys = ["group"] + (["period"] if over else [])
    rows = (
        labels.annotate(group=REPORT_GROUPS[by], **({"period": REPORT_GROUPS[over]} if over else {}))
        .values(*keys).order_by(*keys)
        .annotate(
            confirmed=Count("pk", filter=confirmed),
            corrected=Count("pk", filter=Q(action=Label.Action.CORRECTED)),
            added=Count("pk", filter=Q(action=Label.Action.ADDED)),
            deleted=Count("pk", filter=Q(action=Label.Action.DELETED)),
            changed_later=Count("pk", filter=confirmed & Q(changed_since=True)),
            milliseconds=Sum("time_spent_ms"),
            auto_kept=Count("pk", filter=auto),
            reviewed=Count("pk", filter=auto & Q(reviewed_since=True)),
        )
    )
    return [
        ConfirmRateRow(group="" if row["group"] is None else str(row["group"]), confirmed=row["confirmed"],
                       corrected=row["corrected"], added=row["added"], deleted=row["deleted"],
                       changed_later=row["changed_later"], seconds=(row["milliseconds"] or 0) / 1000,
                       period=row.get("period"), auto_accepted=row["auto_kept"], reviewed=row["reviewed"])
        for row in rows
    ]


# Products with fewer labelled crops than this are a small sample: their share of suspicious crops
# says little (2 of 2 is 0.34..1.0 at 95%), so they are ranked below the others and marked.
MIN_REVIEW_CROPS = 10


@dataclass(frozen=True)
class SuspiciousProduct:
    product: Product
    crops: int
    suspicious: int
    min_crops: int = MIN_REVIEW_CROPS

    @property
    def share(self) -> float:
        return self.suspicious / self.crops if self.crops else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson score interval of the share of suspicious crops."""
        return wilson_interval(self.suspicious, self.crops)

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]

    @property
    def small_sample(self) -> bool:
        return self.crops < self.min_crops


@dataclass(frozen=True)
class LabelNoiseReport:
    """Products by their share of suspicious labelled crops, worst first; confusable pairs (a, b,
    crops that are each other's nearest neighbour across the two); crops left out for want of a
    stored embedding."""

    products: list[SuspiciousProduct]
    pairs: list[tuple[Product, Product, int]]
    unscored: int


# SQLite's default build takes ~32k parameters per statement, and the review reads every labelled box.
IDS_PER_QUERY = 10_000


def stored_vectors(*, box_ids: Sequence[int], embedder_version: ModelVersion) -> dict[int, np.ndarray]:
    """The crop embeddings kept for these boxes by one embedder version (float32), by box id."""
    box_ids = list(box_ids)
    vectors: dict[int, np.ndarray] = {}
    for start in range(0, len(box_ids), IDS_PER_QUERY):
        rows = BoxEmbedding.objects.filter(box_id__in=box_ids[start : start + IDS_PER_QUERY],
                                           embedder=embedder_version).values_list("box_id", "vector")
        vectors.update((box_id, np.frombuffer(bytes(vector), np.float16).astype(np.float32)) for box_id, vector in rows)
    return vectors


def current_embedder() -> ModelVersion | None:
    """The embedder of the pipeline version that pre-labelled last (read, never loaded)."""
    latest = PipelineVersion.objects.filter(embedder__isnull=False).order_by("-created_at", "-pk").first()
    return latest.embedder if latest else None


def _company_noise(user, config: NoiseConfig):
    """Per company of the user: (box ids, product ids, NoiseScores) of its current labels that have
    a stored embedding, and the number of labels left out for want of one."""
    embedder = current_embedder()
    labels = list(Label.objects.filter(is_current=True, product__isnull=False, box__frame__company__in=companies_of(user))
                  .order_by("box_id").values_list("box_id", "product_id", "box__frame__company_id"))
    vectors = stored_vectors(box_ids=[b for b, _, _ in labels], embedder_version=embedder) if embedder else {}
    by_company: dict[int, list[tuple[int, int]]] = {}
    for box_id, product_id, company_id in labels:
        if box_id in vectors:
            by_company.setdefault(company_id, []).append((box_id, product_id))
    scored = []
    for rows in by_company.values():
        box_ids = np.array([b for b, _ in rows], np.int64)
        products = np.array([p for _, p in rows], np.int64)
        matrix = np.stack([vectors[b] for b, _ in rows])
        scored.append((box_ids, products, score_label_noise(matrix, products, config)))
    return scored, len(labels) - sum(len(rows) for rows in by_company.values())


def label_noise_report(user, *, config: NoiseConfig = NoiseConfig(), pairs: int = 20,
                       min_crops: int = MIN_REVIEW_CROPS) -> LabelNoiseReport:
    """Every current label of the user's companies scored for label noise, each company's crops
    against its own only, from the embeddings pre-labelling and the search space stored. Products
    by their share of suspicious crops, worst first, those with fewer than ``min_crops`` crops (a
    small sample) after all the others."""
    scored, unscored = _company_noise(user, config)
    ranked, confusable = [], []
    for _, products, scores in scored:
        ranked += rank_products(products, scores, config.threshold)
        confusable += confusable_pairs(products, scores, limit=pairs)
    catalogue = with_thumbnails(Product.objects.all()).in_bulk({p.product_id for p in ranked})
    return LabelNoiseReport(
        products=sorted((SuspiciousProduct(catalogue[p.product_id], p.crops, p.suspicious, min_crops) for p in ranked),
                        key=lambda s: (s.small_sample, -s.share, -s.suspicious, s.product.pk)),
        pairs=sorted(((catalogue[a], catalogue[b], n) for a, b, n in confusable), key=lambda t: -t[2])[:pairs],
        unscored=unscored,
    )


@dataclass(frozen=True)
class ReviewCrop:
    box: Box
    suspicion: float
    looks_like: Product | None  # the product of its nearest differently-labelled crop
    looks_like_box_id: int | None = None  # that crop, to show beside it


def product_review(user, *, product_id: int, config: NoiseConfig = NoiseConfig()) -> tuple[Product, list[ReviewCrop]]:
    """A product of the user's companies and its labelled crops, most suspicious first."""
    product = get_object_or_404(products_for(user), pk=product_id)
    scored, _ = _company_noise(user, config)
    picked: list[tuple[int, float, int | None, int | None]] = []
    for box_ids, products, scores in scored:
        for i in np.flatnonzero(products == product.pk):
            # Its nearest crop of another product: the product it looks like, and the crop to show.
            j = next((j for j in scores.neighbours[i] if products[j] != products[i]), None)
            picked.append((int(box_ids[i]), float(scores.suspicion[i]),
                           None if j is None else int(products[j]), None if j is None else int(box_ids[j])))
    picked.sort(key=lambda row: (-row[1], row[0]))
    boxes = Box.objects.select_related("frame").in_bulk([row[0] for row in picked])
    others = Product.objects.in_bulk({row[2] for row in picked if row[2] is not None})
    return product, [ReviewCrop(boxes[b], s, others.get(o), other_box) for b, s, o, other_box in picked]


def box_label_history(user, *, box_id: int) -> list[Label]:
    """Every decision about a box of the user's companies, oldest first: the audit trail (who,
    when, what the product became; the row before says what it was). 404 for anyone else's box."""
    box = get_object_or_404(Box.objects.filter(frame__company__in=companies_of(user)), pk=box_id)
    return list(box.labels.select_related("product", "annotator").order_by("created_at", "pk"))


def box_for(user, *, box_id: int) -> Box:
    return get_object_or_404(Box.objects.filter(frame__company__in=companies_of(user)).select_related("frame"), pk=box_id)


# ---------------------------------------------------------------------------------------------- learning loop

GATE_COLUMNS = ("accuracy", "accuracy_without_majority", "macro_accuracy", "first_frames_accuracy", "flicker_rate")


@dataclass
class RoundView:
    round: LearningRound
    candidate: dict | None  # the candidate's gate figures as served
    promoted: dict | None  # the promoted set's, on the same frames

    @property
    def columns(self) -> list[tuple[str, float | None, float | None]]:
        return [(name, (self.candidate or {}).get(name), (self.promoted or {}).get(name)) for name in GATE_COLUMNS]


@dataclass
class CompanyModels:
    company: Company
    sets: list[ModelSet]
    rounds: list[RoundView]


def model_overview(user, *, rounds: int = 20) -> list[CompanyModels]:
    """Per company of the user: its model sets (newest first) and latest rounds with their gate figures."""
    overview = []
    for company in companies_of(user).select_related("model_set"):
        sets = list(ModelSet.objects.filter(company=company).select_related("previous"))
        views = []
        for learning_round in LearningRound.objects.filter(company=company).select_related("candidate")[:rounds]:
            gate = learning_round.report.get("gate", {})
            views.append(RoundView(learning_round, gate.get("candidate", {}).get("served"),
                                   gate.get("promoted", {}).get("served")))
        overview.append(CompanyModels(company, sets, views))
    return overview


def learning_status(user) -> dict:
    """What a Models page polls: every round and collection build of the user's companies, with progress."""
    companies = companies_of(user)
    return {
        "rounds": [{"id": r.pk, "state": r.state, "stage": r.stage, "progress": r.progress, "message": r.message}
                   for r in LearningRound.objects.filter(company__in=companies).order_by("-started_at")[:50]],
        "model_sets": [{"id": s.pk, "state": s.index_state, "indexed": s.indexed_boxes, "total": s.total_boxes,
                        "progress": s.index_progress, "error": s.index_error}
                       for s in ModelSet.objects.filter(company__in=companies)[:50]],
    }


def model_set_for(user, *, model_set_id: int) -> ModelSet:
    return get_object_or_404(ModelSet.objects.filter(company__in=companies_of(user)), pk=model_set_id)


def company_for(user, *, company_id: int) -> Company:
    return get_object_or_404(companies_of(user), pk=company_id)
