"""The API fuzzed from its own OpenAPI schema (schemathesis): whatever a client sends, valid or not,
no operation answers with a server error. Requests go through the WSGI application in-process, as an
admin of a company with a frame, boxes, products and labels to find."""
from __future__ import annotations

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.checks import not_a_server_error

from annotator.models import Frame, Label, PipelineVersion, Prediction
from annotator.services.labels import Decision, record_labels
from annotator.services.users import issue_api_token
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(monkeypatch) -> str:
    monkeypatch.setattr("annotator.services.workspace._deliver_outbox", lambda: None)
    monkeypatch.setattr("annotator.services.prelabel.queue_prelabelling", lambda *, frame_id: None)
    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company) for _ in range(3)]
    version = PipelineVersion.objects.create(name="v2", config_digest="fuzz")
    for status in (Frame.Status.READY, Frame.Status.LABELLED):
        frame = FrameFactory(shelf=shelf, status=status, scheduled=True)
        for i, product in enumerate(products):
            box = BoxFactory(frame=frame, x=10 + 60 * i)
            Prediction.objects.create(box=box, pipeline_version=version, product=product, score=0.8,
                                      candidates=[{"product_id": product.pk, "score": 0.8, "components": {"knn": 0.8}}])
            if status == Frame.Status.LABELLED:
                record_labels(decisions=[Decision(box=box, product=product, action=Label.Action.CONFIRMED)])
    return issue_api_token(user=UserFactory(company=company, role="admin"))


def api_schema() -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    schema.app = WSGIHandler()
    return schema


def cases() -> list[tuple[str, GenerationMode]]:
    """Every operation with valid input, and those that take any input with invalid input too.
    Fuzzing credentials would only feed the login lockout: the token endpoint has its own tests."""
    operations = [result.ok() for result in api_schema().get_all_operations()]
    return [(op.label, mode) for op in operations if op.path != "/api/auth/token/"
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            if mode == GenerationMode.POSITIVE or op.body or any(
                p.location in (ParameterLocation.PATH, ParameterLocation.QUERY) for p in op.iter_parameters())]


@pytest.fixture
def in_process():
    """The test runs in one transaction; Django would close its connection at the end of each request
    (Django's test client disconnects these signals for the same reason)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.parametrize("label, mode", cases(), ids=lambda value: getattr(value, "value", value))
def test_no_request_makes_the_api_fail(label, mode, token, in_process):
    operation = api_schema().find_operation_by_label(label)
    headers = {"Authorization": f"Token {token}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def requests_succeed_or_fail_cleanly(case):
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    requests_succeed_or_fail_cleanly()
