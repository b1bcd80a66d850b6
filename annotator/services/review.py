"""QA leads' review of labelled crops: relabel, remove or mark OK, many boxes at once.

Every change is a new Label row by the reviewer (the Label history is the audit trail: who, when,
the product before in the row it retired, the product after) and reaches the search space through
the outbox like any other decision. Managers read reports but relabel nothing; annotators label
frames in the workspace, not here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from annotator import selectors
from annotator.models import Box, Label, Product
from annotator.permissions import REVIEWERS, can_review, companies_with_role
from annotator.services.labels import Decision, record_labels

REVIEW_ACTIONS = ("relabel", "remove", "ok")


class ReviewError(Exception):
    """A review the service refuses; the message says why."""


class NotAReviewer(ReviewError):
    pass


@dataclass(frozen=True)
class ReviewReport:
    reviewed: int
    changed: int


@transaction.atomic
def review_boxes(*, user, box_ids: Sequence[int], action: str, product_id: int | None = None) -> ReviewReport:
    """Apply one review decision to labelled boxes of the user's companies, all or nothing.
    ``relabel`` needs ``product_id`` (a product of the boxes' company); ``remove`` says the box is no
    product; ``ok`` keeps the label and records that a QA lead looked."""
    if not can_review(user):
        raise NotAReviewer("Only QA leads review labels.")
    if action not in REVIEW_ACTIONS:
        raise ReviewError(f"Unknown review action {action!r}; one of {', '.join(REVIEW_ACTIONS)}.")
    if not box_ids:
        raise ReviewError("No boxes to review.")
    if len(set(box_ids)) != len(box_ids):
        raise ReviewError("A box is listed twice.")
    boxes = Box.objects.filter(pk__in=box_ids, frame__company__in=selectors.companies_of(user)).select_related("frame")
    boxes = {box.pk: box for box in boxes.select_for_update(of=("self",))}
    unknown = sorted(set(box_ids) - boxes.keys())
    if unknown:
        raise ReviewError(f"Box {unknown[0]} is not one of yours.")
    # The role in each box's company: a QA lead of one company may only read reports in another.
    reviewing = set(companies_with_role(user, *REVIEWERS).values_list("pk", flat=True))
    not_reviewed = sorted(pk for pk, box in boxes.items() if box.frame.company_id not in reviewing)
    if not_reviewed:
        raise NotAReviewer(f"Only QA leads review labels; you are none in the company of box {not_reviewed[0]}.")
    current = {label.box_id: label for label in Label.objects.filter(box_id__in=box_ids, is_current=True)}
    unlabelled = sorted(b for b in box_ids if b not in current or current[b].product_id is None)
    if unlabelled:
        raise ReviewError(f"Box {unlabelled[0]} has no product to review.")
    product = None
    if action == "relabel":
        companies = {box.frame.company_id for box in boxes.values()}
        product = Product.objects.filter(pk=product_id, company_id__in=companies).first() if product_id else None
        if product is None or len(companies) > 1:
            raise ReviewError(f"Relabel needs a product of the boxes' company (got {product_id!r}).")
    decisions = []
    for box_id in box_ids:
        before = current[box_id]
        if action == "remove":
            decisions.append(Decision(boxes[box_id], None, Label.Action.REMOVED))
        else:
            decisions.append(Decision(boxes[box_id], product or before.product, Label.Action.REVIEWED))
    record_labels(decisions=decisions, annotator=user)
    changed = sum(1 for d in decisions if d.product is None or d.product.pk != current[d.box.pk].product_id)
    return ReviewReport(reviewed=len(decisions), changed=changed)
