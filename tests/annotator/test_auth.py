"""Authentication: session login for pages, token or session for the API, CSRF on every unsafe
session request, logins locked after repeated failures, passwords checked by Django's validators."""
from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from annotator.models import Frame, Label, PipelineVersion, Prediction
from annotator.services.users import MembershipRefused, create_user
from tests.factories import BoxFactory, CompanyFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"  # the factories' password


@pytest.fixture
def annotator():
    return UserFactory(username="ann", company=CompanyFactory(), role="annotator")


@pytest.fixture
def ready_frame(annotator):
    company = annotator.memberships.get().company
    shelf = ShelfFactory(camera__store__company=company)
    product = ProductFactory(company=company)
    frame = FrameFactory(shelf=shelf, status=Frame.Status.READY, scheduled=True)
    box = BoxFactory(frame=frame)
    version = PipelineVersion.objects.create(name="v2", config_digest="auth")
    Prediction.objects.create(box=box, pipeline_version=version, product=product, score=0.9, candidates=[])
    return {"frame": frame, "body": {"boxes": [{"id": box.pk, "product_id": product.pk}]}}


def token_for(client, username: str, password: str):
    return client.post("/api/auth/token/", {"username": username, "password": password},
                       content_type="application/json")


def test_a_token_authenticates_api_requests_until_revoked(client, annotator):
    issued = token_for(client, "ann", PASSWORD)
    assert issued.status_code == 200
    token = issued.json()["token"]
    assert token_for(client, "ann", PASSWORD).json()["token"] == token  # one token per user
    api = Client(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/frames/").status_code == 200
    assert api.delete("/api/auth/token/").status_code == 204
    refused = api.get("/api/frames/")
    assert refused.status_code == 401 and "Invalid token" in refused.json()["detail"]
    assert not Token.objects.exists()


def test_an_anonymous_api_request_is_a_401_naming_the_scheme_not_a_redirect(client):
    response = client.get("/api/frames/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert client.get("/").status_code == 302  # pages send people to the login page


def test_a_wrong_password_gets_no_token(client, annotator):
    response = token_for(client, "ann", "wrong")
    assert response.status_code == 400 and "Unable to log in" in str(response.json())


def test_session_requests_need_the_csrf_token_and_token_requests_do_not(annotator, ready_frame):
    frame, body = ready_frame["frame"], ready_frame["body"]
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(annotator)
    refused = browser.post(f"/api/frames/{frame.pk}/lease/")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    browser.get("/label/")  # the page sets the CSRF cookie the workspace script sends back
    csrf = browser.cookies["csrftoken"].value
    assert browser.post(f"/api/frames/{frame.pk}/lease/", HTTP_X_CSRFTOKEN=csrf).status_code == 200

    script = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    submitted = script.post(f"/api/frames/{frame.pk}/submit/", body, content_type="application/json")
    assert submitted.status_code == 200, submitted.content
    assert Label.objects.filter(box__frame=frame, annotator=annotator).count() == 1


def login(client, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_repeated_failed_logins_lock_the_username_on_that_address(client, annotator, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "ann", "wrong").status_code == 200  # the form again, with its error
    locked = login(client, "ann", "wrong")
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    # Now even the right password is refused, on the page and for a token...
    assert login(client, "ann", PASSWORD).status_code == 429
    assert token_for(client, "ann", PASSWORD).status_code == 429
    # ...while a colleague in the same shop, behind the same address, logs in.
    UserFactory(username="colleague", company=CompanyFactory(), role="annotator")
    assert login(Client(), "colleague", PASSWORD).status_code == 302


def test_failed_token_requests_count_towards_the_lockout(client, annotator, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        token_for(client, "ann", "wrong")
    assert token_for(client, "ann", PASSWORD).status_code == 429
    assert login(client, "ann", PASSWORD).status_code == 429


def test_a_successful_login_resets_the_count(client, annotator, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "ann", "wrong")
    assert login(client, "ann", PASSWORD).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "ann", "wrong").status_code == 200


@pytest.mark.parametrize("password, message", [
    ("short", "too short"),
    ("password123", "too common"),
    ("73910582746", "entirely numeric"),
    ("newcomer-1", "too similar to the username"),
])
def test_weak_passwords_are_refused(password, message):
    with pytest.raises(ValidationError, match=message):
        create_user(username="newcomer", password=password, role="annotator", company=CompanyFactory())
    assert not get_user_model().objects.filter(username="newcomer").exists()


def test_the_create_user_command_checks_the_password(monkeypatch):
    company = CompanyFactory(name="Acme")
    monkeypatch.setattr("sys.stdin", io.StringIO("password\n"))
    with pytest.raises(CommandError, match="password refused: This password is too common"):
        call_command("create_user", "newcomer", "--company", "Acme", "--role", "annotator")
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-unusual-passphrase\n"))
    out = io.StringIO()
    call_command("create_user", "newcomer", "--company", "Acme", "--role", "qa_lead", stdout=out)
    assert out.getvalue().strip() == "newcomer is a qa_lead of Acme"
    user = get_user_model().objects.get(username="newcomer")
    assert user.check_password("a-long-unusual-passphrase") and not user.is_superuser
    assert [(m.company, m.role) for m in user.memberships.all()] == [(company, "qa_lead")]
    assert not user.groups.exists()  # roles are memberships', not global groups
    with pytest.raises(CommandError, match="no company named 'Nope'"):
        call_command("create_user", "x", "--company", "Nope", "--role", "annotator")


def test_a_locked_out_token_request_is_a_json_429_saying_when_to_retry(client, annotator, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        token_for(client, "ann", "wrong")
    locked = token_for(client, "ann", PASSWORD)
    assert locked.status_code == 429
    assert locked["Content-Type"] == "application/json"
    assert "Too many failed logins" in locked.json()["detail"]
    assert locked["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    page = login(client, "ann", PASSWORD)  # the login page keeps its page, with the same header
    assert page.status_code == 429 and "Too many failed logins" in page.content.decode()
    assert page["Retry-After"] == locked["Retry-After"]


def reset_password(monkeypatch, username: str, company, password: str, *extra: str) -> None:
    """The create_user command on an existing user, as an operator runs it."""
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    call_command("create_user", username, "--company", company.name, "--role", "annotator", *extra,
                 stdout=io.StringIO())


def test_a_password_reset_revokes_the_users_token_and_ends_their_sessions(annotator, monkeypatch):
    company = annotator.memberships.get().company
    api = Client(HTTP_AUTHORIZATION=f"Token {token_for(Client(), 'ann', PASSWORD).json()['token']}")
    browser = Client()
    assert login(browser, "ann", PASSWORD).status_code == 302
    assert api.get("/api/frames/").status_code == 200 and browser.get("/").status_code == 200
    other = UserFactory(username="other", company=company)
    Client().force_login(other)  # a colleague's session, which the reset leaves alone

    reset_password(monkeypatch, "ann", company, "a-long-unusual-passphrase")

    assert api.get("/api/frames/").status_code == 401
    assert not Token.objects.filter(user=annotator).exists()
    assert browser.get("/").status_code == 302  # back to the login page
    owners = {session.get_decoded().get("_auth_user_id") for session in Session.objects.all()}
    assert str(annotator.pk) not in owners and str(other.pk) in owners
    assert login(Client(), "ann", "a-long-unusual-passphrase").status_code == 302


def test_create_user_gives_an_existing_user_another_company_only_when_told(annotator, monkeypatch):
    home = annotator.memberships.get().company
    annotator.memberships.update(role="manager")
    other = CompanyFactory(name="Bolt")
    with pytest.raises(CommandError, match="ann exists and belongs to .*, not Bolt; --add-company"):
        reset_password(monkeypatch, "ann", other, "a-long-unusual-passphrase")
    annotator.refresh_from_db()
    assert annotator.check_password(PASSWORD)  # refused as a whole: the password is unchanged too
    assert [(m.company, m.role) for m in annotator.memberships.all()] == [(home, "manager")]
    with pytest.raises(MembershipRefused):
        create_user(username="ann", password="a-long-unusual-passphrase", role="admin", company=other)

    reset_password(monkeypatch, "ann", other, "a-long-unusual-passphrase", "--add-company")
    # The role given is the new company's; the first company keeps its own.
    assert {(m.company, m.role) for m in annotator.memberships.all()} == {(home, "manager"), (other, "annotator")}


def test_create_user_on_a_member_sets_the_role_of_that_company_only(annotator):
    home = annotator.memberships.get().company
    other = CompanyFactory()
    annotator.memberships.create(company=other, role="annotator")
    create_user(username="ann", password="a-long-unusual-passphrase", role="manager", company=other)
    assert {(m.company, m.role) for m in annotator.memberships.all()} == {(home, "annotator"), (other, "manager")}
