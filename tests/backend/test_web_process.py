"""The web process asks and shows; the worker embeds, searches and trains. A web process that has
served every page and API family to every role has imported no model runtime (torch, timm,
onnxruntime, ultralytics, lightgbm, optuna) and no Qdrant client: each gunicorn worker stays small and
answers its first request at once.

It runs in a fresh process (``tests/backend/web_probe.py``): this one has loaded torch for other tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def probe(tmp_path: Path) -> dict:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_", "QDRANT_", "CELERY_", "AWS_"))}
    environment.update(VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="backend.settings",
                       DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost,testserver")
    done = subprocess.run([sys.executable, "-m", "tests.backend.web_probe"], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_web_serves_every_page_and_api_without_loading_a_model_runtime(tmp_path):
    report = probe(tmp_path)
    statuses = report["statuses"]
    assert not {request: code for request, code in statuses.items() if code >= 500}
    # The requests did what they ask for (so the code behind them ran), not only refused:
    served = ["anonymous login page", "superuser admin index", "superuser admin frames",
              "annotator frames page", "annotator frame page", "annotator workspace", "annotator api frames list",
              "annotator api frame detail", "annotator api frames next", "annotator api frame submit",
              "annotator api products search", "annotator api box history", "qa_lead api review",
              "qa_lead review page", "qa_lead review of a product", "manager reports page", "manager reports chart",
              "manager api confirm-rate report", "qa_lead api suspicious products", "admin models page",
              "admin models status", "annotator api schema", "annotator box crop", "annotator media"]
    assert {name: statuses[name] for name in served} == {name: 200 for name in served}
    assert statuses["annotator api frame upload"] == 201
    for redirected in ("annotator frame retry", "admin model set promote", "admin models rollback"):
        assert statuses[redirected] == 302, redirected
    assert report["loaded"] == [], f"the web process imported {', '.join(report['loaded'])}"
