"""Roles as the README states them: a role belongs to a membership (a company and a role); annotators
and QA leads label, managers read reports and label nothing, QA leads (and admins) review. A refusal
on a page is a page of the app that gives the reason."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from annotator.models import Frame, Membership
from annotator.permissions import can_label, can_read_reports, can_review, companies_with_role, has_role
from tests.celery_sends import prelabel_sent_to
from tests.factories import CompanyFactory, FrameFactory, ShelfFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shelf():
    return ShelfFactory()


@pytest.fixture
def company(shelf):
    return shelf.camera.store.company


def logged_in(client, company, role: str):
    client.force_login(UserFactory(company=company, role=role))
    return client


def test_a_role_holds_in_its_membership_s_company_only():
    acme, bolt = CompanyFactory(), CompanyFactory()
    person = UserFactory(company=acme, role="manager")
    person.memberships.create(company=bolt, role="annotator")
    assert can_read_reports(person, company=acme) and not can_read_reports(person, company=bolt)
    assert can_label(person, company=bolt) and not can_label(person, company=acme)
    assert can_label(person) and can_read_reports(person)  # what pages offer: any membership
    assert not can_review(person)
    assert list(companies_with_role(person, "annotator")) == [bolt]
    operator = UserFactory(is_superuser=True)  # no membership at all
    assert has_role(operator, "admin", company=acme) and can_label(operator)


def test_the_factory_puts_the_role_on_the_membership():
    company = CompanyFactory()
    assert UserFactory(company=company, role="qa_lead").memberships.get().role == "qa_lead"
    assert UserFactory(company=company).memberships.get().role == "annotator"
    assert not UserFactory(role="admin").memberships.exists()
    assert not Group.objects.exists()


def test_managers_are_not_offered_labelling(client, company, shelf):
    FrameFactory(shelf=shelf, status=Frame.Status.FAILED, status_reason="boom")
    frames = logged_in(client, company, "manager").get("/").content.decode()
    assert "Start labelling" not in frames and 'href="/label/"' not in frames
    assert "/retry/" not in frames
    assert "Reports</a>" in frames

    frames = logged_in(Client(), company, "annotator").get("/").content.decode()
    assert "Start labelling" in frames and 'href="/label/"' in frames and "/retry/" in frames


def test_the_labelling_page_refuses_managers_with_the_reason(client, company):
    response = logged_in(client, company, "manager").get("/label/")
    assert response.status_code == 403
    assert "Labelling is for annotators and QA leads" in response.content.decode()
    assert logged_in(Client(), company, "qa_lead").get("/label/").status_code == 200


def test_managers_may_not_retry_a_frame_and_annotators_may(client, company, shelf, monkeypatch,
                                                            django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr("backend.celery.app.send_task", prelabel_sent_to(queued.append))
    failed = FrameFactory(shelf=shelf, status=Frame.Status.FAILED, status_reason="boom")
    refused = logged_in(client, company, "manager").post(f"/frames/{failed.pk}/retry/")
    assert refused.status_code == 403 and "Labelling is for annotators" in refused.content.decode()
    failed.refresh_from_db()
    assert failed.status == Frame.Status.FAILED and queued == []

    with django_capture_on_commit_callbacks(execute=True):
        retried = logged_in(Client(), company, "annotator").post(f"/frames/{failed.pk}/retry/")
    assert retried.status_code == 302
    failed.refresh_from_db()
    assert failed.status == Frame.Status.QUEUED and queued == [failed.pk]


def test_the_suspicious_products_report_is_the_qa_leads_not_the_managers(client, company):
    refused = logged_in(client, company, "manager").get("/api/reports/suspicious-products/")
    assert refused.status_code == 403 and "QA leads" in refused.json()["detail"]
    for role in ("qa_lead", "admin"):
        assert logged_in(Client(), company, role).get("/api/reports/suspicious-products/").status_code == 200


def test_a_refused_page_is_the_apps_page_with_the_reason_and_a_way_back(client, company):
    response = logged_in(client, company, "annotator").get("/reports/")
    assert response.status_code == 403
    body = response.content.decode()
    assert '<header class="topbar">' in body and "Shelf annotator" in body
    assert "Reports are for managers and QA leads." in body
    assert 'href="/"' in body and "Back to the frames" in body


def test_a_form_sent_without_its_csrf_token_is_refused_on_the_apps_page(company):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(UserFactory(company=company))
    response = browser.post("/accounts/logout/")
    assert response.status_code == 403
    body = response.content.decode()
    assert '<header class="topbar">' in body and "The form has expired" in body


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_each_membership_its_users_group_role():
    executor = MigrationExecutor(connection)
    before, after = [("annotator", "0006_frame_original_name")], [("annotator", "0007_membership_roles")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    OldGroup, OldUser = old.get_model("auth", "Group"), old.get_model("auth", "User")
    OldCompany, OldMembership = old.get_model("annotator", "Company"), old.get_model("annotator", "Membership")
    acme, bolt = OldCompany.objects.create(name="acme"), OldCompany.objects.create(name="bolt")
    groups = {name: OldGroup.objects.get_or_create(name=name)[0] for name in ("annotator", "qa_lead", "manager", "admin")}
    people = {}
    for username, names in {"boss": ["manager"], "lead": ["annotator", "qa_lead"], "plain": []}.items():
        people[username] = OldUser.objects.create(username=username)
        people[username].groups.set([groups[name] for name in names])
        for company in (acme, bolt):
            OldMembership.objects.create(user=people[username], company=company)

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    # On to the newest schema: today's models read it, and later tests need it.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    roles = {(m.user.username, m.company.name): m.role for m in Membership.objects.select_related("user", "company")}
    assert roles == {("boss", "acme"): "manager", ("boss", "bolt"): "manager",
                     ("lead", "acme"): "qa_lead", ("lead", "bolt"): "qa_lead",
                     ("plain", "acme"): "annotator", ("plain", "bolt"): "annotator"}
    assert not Group.objects.exists()  # no global role is left to grant a role in every company
