"""A history of annotators' decisions to report on, shared by the report tests and the browser test."""
from datetime import UTC, datetime, timedelta

import numpy as np

from annotator.models import Label
from annotator.selectors import WORKSPACE_ACTIONS
from tests.factories import (
    BoxFactory,
    CameraFactory,
    CategoryFactory,
    CompanyFactory,
    FrameFactory,
    LabelFactory,
    PipelineVersionFactory,
    ProductFactory,
    ShelfFactory,
    UserFactory,
)

MONDAY = datetime(2024, 3, 4, 9, tzinfo=UTC)


def decision_history() -> dict:
    """Sixty decisions over ten days, by two annotators, on two stores' cameras, two pipeline
    versions, two categories; some confirmed suggestions later replaced by a QA lead; imports and
    another company's labels beside them, which must not count."""
    rng = np.random.default_rng(7)
    company = CompanyFactory()
    shelves = [ShelfFactory(camera=CameraFactory(store__company=company)) for _ in range(2)]
    categories = [CategoryFactory(company=company, name=name) for name in ("Dairy", "Juice")]
    products = [ProductFactory(company=company, category=categories[i % 2]) for i in range(4)]
    versions = [PipelineVersionFactory(name="v1"), PipelineVersionFactory(name="v2")]
    annotators = [UserFactory(username=f"ann{i}", company=company, role="annotator") for i in range(2)]
    qa = UserFactory(username="qa", company=company, role="qa_lead")
    for i in range(60):
        frame = FrameFactory(shelf=shelves[i % 2], checksum=f"{i:064d}")
        box = BoxFactory(frame=frame)
        action = WORKSPACE_ACTIONS[int(rng.integers(0, 4))]
        suggested = None if action == Label.Action.ADDED else products[int(rng.integers(0, 4))]
        chosen = {Label.Action.CONFIRMED: suggested, Label.Action.DELETED: None}.get(
            action, products[int(rng.integers(0, 4))])
        if action == Label.Action.CORRECTED and chosen == suggested:
            chosen = products[(products.index(suggested) + 1) % 4]
        when = MONDAY + timedelta(hours=int(rng.integers(0, 240)))
        label = LabelFactory(box=box, product=chosen, action=action, suggested_product=suggested,
                             suggested_by=None if suggested is None else versions[i % 2],
                             annotator=annotators[int(rng.integers(0, 2))],
                             time_spent_ms=int(rng.integers(500, 20_000)), created_at=when)
        if action == Label.Action.CONFIRMED and rng.random() < 0.3:
            Label.objects.filter(pk=label.pk).update(is_current=False)
            LabelFactory(box=box, product=products[0], action=Label.Action.REVIEWED, annotator=qa,
                         suggested_product=suggested, created_at=when + timedelta(days=1))
    LabelFactory(box=BoxFactory(frame=FrameFactory(shelf=shelves[0], checksum="f" * 64)), action=Label.Action.IMPORTED)
    LabelFactory(action=Label.Action.CONFIRMED, annotator=UserFactory(company=CompanyFactory()))  # elsewhere
    manager = UserFactory(username="boss", company=company, role="manager")
    return {"company": company, "manager": manager, "annotator": annotators[0], "qa": qa}
