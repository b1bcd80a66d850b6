"""The API fuzzed from its own OpenAPI schema (schemathesis): whatever a client sends, valid or not,
no operation answers with a server error, and every answer is one the schema describes: a documented
status code, in a documented content type, with the documented headers and a body that conforms.
Requests go through the WSGI application in-process, to a company with a frame, boxes, products and
labels to find: as its admin with any input, and with valid input as an annotator, a manager and
nobody signed in (whose refusals, 401 and 403, must be documented too)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from annotator.models import Box, Frame, Label, PipelineVersion, Prediction
from annotator.services.labels import Decision, record_labels
from annotator.services.users import issue_api_token
from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
# Who sends the requests, and how many each operation gets: the admin may do everything, so gets the
# most varied answers; the others are there for their refusals.
CALLERS = {"admin": 25, "annotator": 10, "manager": 10, "anonymous": 5}


@dataclass
class Company:
    tokens: dict[str, str]
    ids: dict[str, list[int]]  # path parameter: ids that exist, for valid requests to find something


@pytest.fixture
def company(monkeypatch) -> Company:
    monkeypatch.setattr("annotator.services.workspace._deliver_outbox", lambda **company: None)
    monkeypatch.setattr("annotator.services.prelabel_queue.queue_prelabelling", lambda *, frame_id: None)
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
    # No passwords (hashing one takes longer than a dozen requests): tokens are all these users need.
    tokens = {role: issue_api_token(user=UserFactory(company=company, role=role, password=None))
              for role in CALLERS if role != "anonymous"}
    return Company(tokens=tokens, ids={"frame_id": list(Frame.objects.values_list("pk", flat=True)),
                                       "box_id": list(Box.objects.values_list("pk", flat=True))})


def api_schema() -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    schema.app = WSGIHandler()
    return schema


def cases() -> list[tuple[str, GenerationMode, str]]:
    """Every operation with valid input, and as the admin those that take any input with invalid
    input too. Fuzzing credentials would only feed the login lockout: the token endpoint has its own tests."""
    operations = [result.ok() for result in api_schema().get_all_operations()]
    return [(op.label, mode, caller) for op in operations if op.path != "/api/auth/token/"
            for caller in CALLERS
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            if mode == GenerationMode.POSITIVE or caller == "admin" and (op.body or any(
                p.location in (ParameterLocation.PATH, ParameterLocation.QUERY) for p in op.iter_parameters()))]


@pytest.fixture
def in_process():
    """The test runs in one transaction; Django would close its connection at the end of each request
    (Django's test client disconnects these signals for the same reason)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.parametrize("label, mode, caller", cases(), ids=lambda value: getattr(value, "value", value))
def test_every_answer_is_one_the_schema_describes(label, mode, caller, company, in_process):
    operation = api_schema().find_operation_by_label(label)
    # Uncompressed answers: the GZip middleware's bodies are bytes the content checks cannot read.
    headers = {"Accept-Encoding": "identity",
               **({"Authorization": f"Token {company.tokens[caller]}"} if caller in company.tokens else {})}

    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(max_examples=CALLERS[caller], deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def answers_conform(case, data):
        if mode == GenerationMode.POSITIVE:
            # Random ids almost never exist: half the time, one that does, so that the answers about
            # something (a frame, its lease, a box's history) are checked too, not only the 404.
            for name in list(case.path_parameters or {}):
                if name in company.ids and data.draw(st.booleans(), label=f"existing {name}"):
                    case.path_parameters[name] = data.draw(st.sampled_from(company.ids[name]), label=name)
        case.call_and_validate(headers=headers, checks=CHECKS)

    answers_conform()


# Answers that random input reaches too rarely for every run to see them: the operation, the case,
# the status and how the body starts.
RARE_ANSWERS = {
    "a CSV export with no rows": ("GET /api/reports/confirm-rate/", {"query": {"format": "csv", "start": "2999-01-01"}},
                                  200, b"group,boxes,suggested,"),
    "a CSV export refused": ("GET /api/reports/confirm-rate/",
                             {"query": {"format": "csv", "start": "2002-01-01", "end": "2001-01-01"}},
                             400, b"non_field_errors\r\nstart 2002-01-01 is after end 2001-01-01\r\n"),
    "a format no renderer has": ("GET /api/reports/confirm-rate/", {"query": {"format": "xml"}}, 404, b'{"detail":'),
    "a path no route matches": ("GET /api/frames/{frame_id}/", {"path_parameters": {"frame_id": -1}},
                                404, b'{"detail":'),
    "a body in a type not taken": ("POST /api/frames/", {"body": "x", "media_type": "text/plain"}, 415, b'{"detail":'),
    "more form fields than Django takes": ("POST /api/review/", {
        "body": {"action": "ok", "box_ids": [1] * 1001}, "media_type": "application/x-www-form-urlencoded"},
        400, b'{"detail": "The number of GET/POST parameters exceeded'),
}


@pytest.mark.parametrize("answer", RARE_ANSWERS)
def test_answers_that_fuzzing_rarely_reaches_are_described_too(answer, company, in_process):
    label, case, status, body = RARE_ANSWERS[answer]
    response = api_schema().find_operation_by_label(label).Case(**case).call_and_validate(
        headers={"Authorization": f"Token {company.tokens['admin']}", "Accept-Encoding": "identity"}, checks=CHECKS)
    assert response.status_code == status and response.content.startswith(body), response.content
