"""POST /api/products/: an annotator adds a product the catalogue lacks."""
import threading

import pytest
from django.db import connection

from annotator.models import Category, Product
from annotator.services import catalog
from tests.factories import CategoryFactory, CompanyFactory, ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def company():
    return CompanyFactory()


def test_an_annotator_creates_a_product_in_their_company(client, company):
    CategoryFactory(company=company, name="Dairy")
    client.force_login(UserFactory(company=company, role="annotator"))
    response = client.post("/api/products/", {"name": " Oat milk ", "sku": "OAT-1", "category": "Dairy"},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    product = Product.objects.get(pk=body["id"])
    assert body == {"id": product.pk, "sku": "OAT-1", "name": "Oat milk", "category": "Dairy", "thumbnail_url": None}
    assert product.company == company
    assert Category.objects.filter(company=company).count() == 1  # the existing category, not a second one
    assert client.get("/api/products/search/", {"q": "oat"}).json()[0]["id"] == product.pk


def test_a_new_category_name_is_created_and_the_category_is_optional(client, company):
    client.force_login(UserFactory(company=company, role="qa_lead"))
    assert client.post("/api/products/", {"name": "Rye", "sku": "R1", "category": "Bakery"},
                       content_type="application/json").json()["category"] == "Bakery"
    assert client.post("/api/products/", {"name": "Plain", "sku": "P1"},
                       content_type="application/json").json()["category"] is None
    assert Category.objects.get(company=company).name == "Bakery"


def test_a_duplicate_sku_is_a_400_with_a_message_and_another_companys_sku_is_not_a_duplicate(client, company):
    ProductFactory(company=company, sku="DUP", name="Old one")
    ProductFactory(company=CompanyFactory(), sku="ELSEWHERE")
    client.force_login(UserFactory(company=company, role="annotator"))
    response = client.post("/api/products/", {"name": "New one", "sku": "DUP"}, content_type="application/json")
    assert response.status_code == 400
    assert "DUP" in response.json()["detail"] and "Old one" in response.json()["detail"]
    assert client.post("/api/products/", {"name": "Mine", "sku": "ELSEWHERE"},
                       content_type="application/json").status_code == 201
    assert Product.objects.filter(sku="DUP").count() == 1


@pytest.mark.parametrize("body, field", [({"sku": "X"}, "name"), ({"name": "X"}, "sku"),
                                          ({"name": "  ", "sku": "X"}, "name"), ({"name": "X", "sku": "x" * 101}, "sku")])
def test_a_product_without_a_name_or_a_valid_sku_is_a_400(client, company, body, field):
    client.force_login(UserFactory(company=company, role="annotator"))
    response = client.post("/api/products/", body, content_type="application/json")
    assert response.status_code == 400 and field in response.json()
    assert not Product.objects.exists()


def test_a_manager_may_not_and_nobody_signed_in_may_not(client, company):
    client.force_login(UserFactory(company=company, role="manager"))
    assert client.post("/api/products/", {"name": "N", "sku": "S"}, content_type="application/json").status_code == 403
    client.logout()
    assert client.post("/api/products/", {"name": "N", "sku": "S"}, content_type="application/json").status_code == 401
    assert not Product.objects.exists()


def test_a_user_of_several_companies_says_which_and_only_one_they_label_for(client, company):
    from annotator.models import Membership

    other, watched = CompanyFactory(), CompanyFactory()
    user = UserFactory(company=company, role="annotator")
    Membership.objects.create(user=user, company=other, role="annotator")
    Membership.objects.create(user=user, company=watched, role="manager")
    client.force_login(user)
    response = client.post("/api/products/", {"name": "N", "sku": "S"}, content_type="application/json")
    assert response.status_code == 400 and "several companies" in response.json()["detail"]
    response = client.post("/api/products/", {"name": "N", "sku": "S", "company": watched.pk},
                           content_type="application/json")
    assert response.status_code == 400 and "not one you label for" in response.json()["detail"]
    assert client.post("/api/products/", {"name": "N", "sku": "S", "company": other.pk},
                       content_type="application/json").status_code == 201
    assert Product.objects.get().company == other


@pytest.mark.django_db(transaction=True)
def test_two_requests_for_one_sku_at_once_make_one_product_and_one_refusal(company, monkeypatch):
    """Both see the SKU free (held at a barrier after the check), both insert: the unique constraint
    lets one through and the other gets the duplicate message, not a server error."""
    both_checked = threading.Barrier(2, timeout=10)
    check = catalog._product_with_sku

    def checked_together(**kwargs):
        found = check(**kwargs)
        both_checked.wait()
        return found

    monkeypatch.setattr(catalog, "_product_with_sku", checked_together)
    outcomes = []

    def create(name):
        try:
            catalog.create_product(company=company, name=name, sku="SAME")
            outcomes.append("created")
        except catalog.ProductError as error:
            outcomes.append(str(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes, key=len) == ["created", "SKU 'SAME' is already one of the company's products"]
    assert Product.objects.filter(sku="SAME").count() == 1
