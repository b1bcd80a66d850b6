"""Run as ``python -m tests.backend.web_probe`` in a fresh process (an empty ``VAR_DIR``, SQLite): load
the WSGI app as gunicorn does, serve every page and API family to a user of each role, and print, as
JSON, each request's status and which model runtimes the process has imported meanwhile.

It imports only what the web imports (the app, Django's test client, the factories), never the
tests' conftest, which loads torch for its own fixtures.
"""
from __future__ import annotations

import io
import json
import os
import sys
from datetime import UTC, datetime

# Model runtimes, the search-space clients and the app's modules that hold them: the worker's, never the web's.
WORKER_ONLY_MODULES = ("torch", "torchvision", "timm", "onnxruntime", "ultralytics", "lightgbm", "optuna",
                       "qdrant_client", "qdrant_edge", "annotator.engines", "annotator.tasks")


def loaded_worker_modules() -> list[str]:
    return sorted(name for name in WORKER_ONLY_MODULES if name in sys.modules)


def scene() -> dict:
    """A company with a frame of each state, labels, a promoted model set and a round, and a user of each role."""
    from annotator.models import Frame, LearningRound, ModelSet, ModelVersion, PipelineVersion, Prediction
    from annotator.services.labels import Decision, record_labels
    from annotator.services.workspace import schedule_frame
    from tests.factories import BoxFactory, FrameFactory, ProductFactory, ShelfFactory, UserFactory

    shelf = ShelfFactory()
    company = shelf.camera.store.company
    products = [ProductFactory(company=company, name=name) for name in ("Apple juice", "Oat milk")]
    version = PipelineVersion.objects.create(name="v2")
    taken = datetime(2024, 3, 4, 10, tzinfo=UTC)

    def frame_with_boxes(status: str, day: int) -> Frame:
        frame = FrameFactory(shelf=shelf, status=status, captured_at=taken.replace(day=day), checksum=f"{day:064d}")
        for i in range(3):
            box = BoxFactory(frame=frame, x=10 + 70 * i, y=10, w=60, h=100)
            Prediction.objects.create(box=box, pipeline_version=version, product=products[i % 2], score=0.9,
                                      candidates=[{"product_id": products[i % 2].pk, "score": 0.9,
                                                   "components": {"knn": 0.9}}])
        return frame

    labelled = frame_with_boxes(Frame.Status.LABELLED, 1)
    record_labels(decisions=[Decision(box, products[0], "confirmed") for box in labelled.boxes.all()])
    ready = frame_with_boxes(Frame.Status.READY, 20)
    schedule_frame(frame=ready)
    failed = FrameFactory(shelf=shelf, status=Frame.Status.FAILED, status_reason="broken", checksum="f" * 64)
    embedder = ModelVersion.objects.create(kind=ModelVersion.Kind.EMBEDDER, name="company-embedder")
    promoted = ModelSet.objects.create(company=company, name="round-1", folder="/nowhere/round-1", embedder=embedder,
                                       version="v2", index_state=ModelSet.IndexState.READY)
    candidate = ModelSet.objects.create(company=company, name="round-2", folder="/nowhere/round-2", embedder=embedder,
                                        version="v2", index_state=ModelSet.IndexState.NONE)
    company.model_set = promoted
    company.save()
    LearningRound.objects.create(company=company, budget_minutes=1, candidate=candidate, state="rejected", stage="done")
    users = {role: UserFactory(username=role, company=company, role=role)
             for role in ("annotator", "qa_lead", "manager", "admin")}
    users["superuser"] = UserFactory(username="superuser", is_staff=True, is_superuser=True)
    return {"company": company, "shelf": shelf, "products": products, "ready": ready, "labelled": labelled,
            "failed": failed, "candidate": candidate, "users": users}


def requests_of(role: str, data: dict) -> dict[str, tuple[str, str, dict]]:
    """Every page and API family, by name: (method, path, options). Each role asks for all of them
    (a refusal is served too)."""
    from tests.factories import shelf_image

    ready, labelled = data["ready"], data["labelled"]
    box = labelled.boxes.order_by("pk").first()
    product = data["products"][0]
    answers = {"boxes": [{"id": b.pk, "product_id": product.pk} for b in ready.boxes.order_by("pk")]}
    upload = io.BytesIO(shelf_image((320, 160), [((10, 10, 60, 100), 1)]))
    upload.name = f"{role}.jpg"
    as_json = {"content_type": "application/json"}
    return {
        "frames page": ("get", "/", {}),
        "frame page": ("get", f"/frames/{ready.pk}/", {}),
        "workspace": ("get", "/label/", {}),
        "workspace of a frame": ("get", f"/frames/{ready.pk}/label/", {}),
        "reports page": ("get", "/reports/", {}),
        "reports chart": ("get", "/reports/confirm-rate.svg", {}),
        "review page": ("get", "/review/", {}),
        "review of a product": ("get", f"/review/{product.pk}/", {}),
        "box crop": ("get", f"/boxes/{box.pk}/crop.jpg", {}),
        "models page": ("get", "/models/", {}),
        "models status": ("get", "/models/status/", {}),
        "media": ("get", f"/media/{ready.image.name}", {}),
        "frame retry": ("post", f"/frames/{data['failed'].pk}/retry/", {}),
        "api frames list": ("get", "/api/frames/", {}),
        "api frame detail": ("get", f"/api/frames/{ready.pk}/", {}),
        "api frames next": ("post", "/api/frames/next/", {}),
        "api frame lease": ("post", f"/api/frames/{ready.pk}/lease/", {}),
        "api frame submit": ("post", f"/api/frames/{ready.pk}/submit/", {"data": answers, **as_json}),
        "api frame upload": ("post", "/api/frames/", {"data": {"image": upload, "shelf": data["shelf"].pk}}),
        "api products": ("get", "/api/products/", {}),
        "api products search": ("get", "/api/products/search/", {"data": {"q": "juice"}}),
        "api box history": ("get", f"/api/boxes/{box.pk}/history/", {}),
        "api review": ("post", "/api/review/", {"data": {"box_ids": [box.pk], "action": "ok"}, **as_json}),
        "api confirm-rate report": ("get", "/api/reports/confirm-rate/", {}),
        "api suspicious products": ("get", "/api/reports/suspicious-products/", {}),
        "api schema": ("get", "/api/schema/", {}),
        "model set promote": ("post", f"/models/{data['candidate'].pk}/promote/", {}),
        "models rollback": ("post", f"/models/rollback/{data['company'].pk}/", {}),
        "admin index": ("get", "/admin/", {}),
        "admin frames": ("get", "/admin/annotator/frame/", {}),
    }


def wsgi_get(application, path: str) -> int:
    """A plain WSGI call, as a server makes it; returns the status code."""
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "SERVER_NAME": "127.0.0.1", "HTTP_HOST": "127.0.0.1"}
    setup_testing_defaults(environ)
    status = []
    body = application(environ, lambda line, headers, exc_info=None: status.append(line))
    b"".join(body)
    body.close()
    return int(status[0].split()[0])


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    from backend.wsgi import application  # what gunicorn loads

    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    statuses: dict[str, int] = {"anonymous login page": wsgi_get(application, "/accounts/login/")}
    statuses["anonymous api token"] = Client().post(
        "/api/auth/token/", {"username": "nobody", "password": "wrong"}).status_code
    data = scene()
    for role, user in data["users"].items():
        client = Client()
        statuses[f"{role} login"] = client.post(
            "/accounts/login/", {"username": user.username, "password": "correct-horse-battery"}).status_code
        for name, (method, path, options) in requests_of(role, data).items():
            statuses[f"{role} {name}"] = getattr(client, method)(path, **options).status_code
    print(json.dumps({"statuses": statuses, "loaded": loaded_worker_modules()}))


if __name__ == "__main__":
    main()
