"""Pages as a client sees them: compressed JSON, the icon."""
import gzip
import json

import pytest
from django.urls import reverse

from annotator.models import Frame
from tests.factories import BoxFactory, FrameFactory, ShelfFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def annotator_and_frame():
    shelf = ShelfFactory()
    frame = FrameFactory(shelf=shelf, status=Frame.Status.READY)
    for i in range(30):
        BoxFactory(frame=frame, x=5 * i, y=5)
    return UserFactory(company=shelf.camera.store.company, role="annotator"), frame


def test_the_frame_json_is_gzipped_for_a_client_that_accepts_it(client, annotator_and_frame):
    user, frame = annotator_and_frame
    client.force_login(user)
    url = f"/api/frames/{frame.pk}/"
    plain = client.get(url)
    assert plain.status_code == 200 and "Content-Encoding" not in plain
    packed = client.get(url, headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.status_code == 200
    assert packed["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed["Vary"]
    assert len(packed.content) < len(plain.content)
    assert json.loads(gzip.decompress(packed.content))["id"] == frame.pk


def test_the_pages_link_an_icon_and_favicon_ico_leads_to_it(client, annotator_and_frame):
    user, _ = annotator_and_frame
    client.force_login(user)
    page = client.get(reverse("annotator:frame-list")).content.decode()
    assert '<link rel="icon" type="image/svg+xml" href="/static/annotator/favicon.svg">' in page
    client.logout()
    icon = client.get("/favicon.ico")  # no login needed: a browser asks before anyone logs in
    assert icon.status_code == 301 and icon["Location"] == "/static/annotator/favicon.svg"
    login = client.get(reverse("login")).content.decode()
    assert 'rel="icon"' in login
