"""Messages say "an annotator", not "a annotator"."""
import io

import pytest
from django.core.management import call_command

from annotator.text import with_article
from tests.factories import CompanyFactory


@pytest.mark.parametrize("word, said", [
    ("annotator", "an annotator"), ("admin", "an admin"), ("manager", "a manager"), ("qa_lead", "a qa_lead"),
    ("embedder", "an embedder"), ("realgram", "a realgram"), ("tracking", "a tracking"),
    ("JPEG", "a JPEG"), ("PNG", "a PNG"), ("MPO", "an MPO"), ("SVG", "an SVG"), ("TIFF", "a TIFF"),
    ("user", "a user"), ("unusable", "an unusable"), ("", ""),
])
def test_the_article_follows_the_sound(word, said):
    assert with_article(word) == said


@pytest.mark.django_db
def test_the_create_user_command_says_an_annotator(monkeypatch):
    CompanyFactory(name="Acme")
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-unusual-passphrase\n"))
    out = io.StringIO()
    call_command("create_user", "newcomer", "--company", "Acme", "--role", "annotator", stdout=out)
    assert out.getvalue().strip() == "newcomer is an annotator of Acme"
