"""backend/settings.py is the only reader of the environment: every setting has an embedded default
for a fresh machine, and production points it at real services through environment variables.

Settings are read once, at import, so each case runs in a fresh process with a controlled environment.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROLLED = ("DATABASE_URL", "REDIS_URL", "QDRANT_URL", "QDRANT_PATH", "QDRANT_API_KEY", "QDRANT_EMBEDDED",
              "MEDIA_ROOT", "TIME_ZONE", "PRELABEL_QUEUE")
CONTROLLED_PREFIXES = ("AWS_", "INGEST_", "DJANGO_", "CELERY_")

PRINT_SETTINGS = """
import json
from django.conf import settings
print(json.dumps({
    "VAR_DIR": str(settings.VAR_DIR),
    "DATABASES": settings.DATABASES,
    "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
    "CELERY_BROKER_TRANSPORT_OPTIONS": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "QDRANT_URL": settings.QDRANT_URL,
    "QDRANT_PATH": str(settings.QDRANT_PATH),
    "QDRANT_EMBEDDED": settings.QDRANT_EMBEDDED,
    "STORAGES": settings.STORAGES,
    "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    "DEBUG": settings.DEBUG,
    "SECRET_KEY": settings.SECRET_KEY,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "CSRF_TRUSTED_ORIGINS": settings.CSRF_TRUSTED_ORIGINS,
}, default=str))
"""


def run_python(script: str, var_dir: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {
        name: value for name, value in os.environ.items()
        if name not in CONTROLLED and not name.startswith(CONTROLLED_PREFIXES)
    }
    environ.update(DJANGO_SETTINGS_MODULE="backend.settings", VAR_DIR=str(var_dir), **env)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=120
    )


def settings_for(var_dir: Path, **env: str) -> dict:
    result = run_python(PRINT_SETTINGS, var_dir, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def var_dir(tmp_path) -> Path:
    return (tmp_path / "var").resolve()


# ------------------------------------------------------------------ defaults


def test_defaults_keep_everything_under_var_dir(var_dir):
    config = settings_for(var_dir)

    assert config["VAR_DIR"] == str(var_dir)
    database = config["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(database["NAME"]) == var_dir / "db.sqlite3"

    assert config["CELERY_BROKER_URL"] == "filesystem://localhost//"
    options = config["CELERY_BROKER_TRANSPORT_OPTIONS"]
    celery_dir = var_dir / "celery"
    assert Path(options["data_folder_in"]) == Path(options["data_folder_out"]) == celery_dir / "queue"
    assert Path(options["control_folder"]) == celery_dir / "control"
    assert Path(options["processed_folder"]).parent == celery_dir
    for folder in ("data_folder_in", "control_folder", "processed_folder"):
        assert Path(options[folder]).is_dir(), folder
    assert config["CELERY_RESULT_BACKEND"].startswith("file://")
    results = Path(config["CELERY_RESULT_BACKEND"].removeprefix("file://"))
    assert results.is_relative_to(celery_dir) and results.is_dir()

    assert config["QDRANT_URL"] == ""
    assert Path(config["QDRANT_PATH"]) == var_dir / "qdrant"
    assert config["QDRANT_EMBEDDED"] == "edge"

    assert config["STORAGES"]["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert Path(config["MEDIA_ROOT"]) == var_dir / "media"

    assert config["DEBUG"] is False
    assert config["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost"]


def test_a_secret_key_is_generated_once_and_kept(var_dir):
    first = settings_for(var_dir)["SECRET_KEY"]

    key_file = var_dir / "secret_key"
    assert key_file.read_text().strip() == first
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert settings_for(var_dir)["SECRET_KEY"] == first  # the same key on the next start
    assert settings_for(var_dir.parent / "elsewhere")["SECRET_KEY"] != first  # another machine, another key


def test_django_secret_key_wins_and_writes_no_file(var_dir):
    config = settings_for(var_dir, DJANGO_SECRET_KEY="from-the-environment-" + "x" * 40)
    assert config["SECRET_KEY"] == "from-the-environment-" + "x" * 40
    assert not (var_dir / "secret_key").exists()


def test_hosts_debug_and_csrf_origins_come_from_the_environment(var_dir):
    config = settings_for(
        var_dir, DJANGO_ALLOWED_HOSTS="shelves.example.com, web ,", DJANGO_DEBUG="true",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://shelves.example.com",
    )
    assert config["ALLOWED_HOSTS"] == ["shelves.example.com", "web"]
    assert config["DEBUG"] is True
    assert config["CSRF_TRUSTED_ORIGINS"] == ["https://shelves.example.com"]
    assert settings_for(var_dir, DJANGO_DEBUG="0")["DEBUG"] is False


# ------------------------------------------------------------------ production

CHECK_DEPLOY = ("from django.core.management import execute_from_command_line; "
                "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])")
PRODUCTION = {"DJANGO_HTTPS": "true", "DJANGO_SECRET_KEY": "k3y-" + "Qx7!pZ2@" * 8,
              "DJANGO_ALLOWED_HOSTS": "shelves.example.com"}


def test_check_deploy_is_clean_with_production_settings(var_dir):
    result = run_python(CHECK_DEPLOY, var_dir, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_the_local_defaults(var_dir):
    """Off HTTPS (a demo) the cookies are not secure-only and there is no HSTS: the check says so."""
    result = run_python(CHECK_DEPLOY, var_dir)
    assert result.returncode != 0
    for code in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert code in result.stderr


@pytest.mark.parametrize("env, message", [
    ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY must be set when DJANGO_HTTPS is on"),
    ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off when DJANGO_HTTPS is on"),
])
def test_production_refuses_a_generated_secret_key_or_debug(var_dir, env, message):
    result = run_python("import django; django.setup()", var_dir, **{**PRODUCTION, **env})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(message)
    assert not (var_dir / "secret_key").exists()


# ------------------------------------------------------------------ services


def test_database_url_selects_postgresql(var_dir):
    database = settings_for(var_dir, DATABASE_URL="postgres://shelf:s3cret@db.internal:6543/shelves")["DATABASES"][
        "default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["HOST"], database["PORT"], database["USER"], database["PASSWORD"]) == (
        "shelves", "db.internal", 6543, "shelf", "s3cret")
    # The SQLite-only options stay with SQLite.
    assert "transaction_mode" not in database.get("OPTIONS", {})
    assert "TEST" not in database or database["TEST"].get("NAME") is None


@pytest.mark.parametrize("name", ["DATABASE_URL", "REDIS_URL", "QDRANT_URL", "AWS_STORAGE_BUCKET_NAME"])
def test_an_empty_variable_means_the_default(var_dir, name):
    config = settings_for(var_dir, **{name: ""})
    assert config["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(config["DATABASES"]["default"]["NAME"]) == var_dir / "db.sqlite3"
    assert config["CELERY_BROKER_URL"] == "filesystem://localhost//"
    assert config["QDRANT_URL"] == ""
    assert config["STORAGES"]["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"


def test_prelabelling_can_have_a_queue_of_its_own(var_dir):
    script = "from django.conf import settings; print(settings.CELERY_TASK_ROUTES)"
    default = run_python(script, var_dir)
    assert "'queue': 'celery'" in default.stdout
    own = run_python(script, var_dir, PRELABEL_QUEUE="prelabel")
    assert "'annotator.tasks.prelabel_frame': {'queue': 'prelabel'}" in own.stdout
    assert "'annotator.tasks.learn_company': {'queue': 'learning'}" in own.stdout


def test_an_unknown_embedded_engine_is_refused_at_start(var_dir):
    result = run_python(PRINT_SETTINGS, var_dir, QDRANT_EMBEDDED="faiss")
    assert result.returncode != 0
    assert "QDRANT_EMBEDDED must be one of edge, local, not 'faiss'" in result.stderr


def test_redis_url_selects_the_redis_broker_and_result_backend(var_dir):
    config = settings_for(var_dir, REDIS_URL="redis://cache.internal:6380/2")
    assert config["CELERY_BROKER_URL"] == "redis://cache.internal:6380/2"
    assert config["CELERY_RESULT_BACKEND"] == "redis://cache.internal:6380/2"
    assert "data_folder_in" not in config["CELERY_BROKER_TRANSPORT_OPTIONS"]


def test_the_celery_app_takes_its_broker_from_settings(var_dir):
    script = (
        "import json, django\n"
        "django.setup()\n"
        "from backend.celery import app\n"
        "print(json.dumps([app.conf.broker_url, app.conf.result_backend, app.conf.task_acks_late]))\n"
    )
    result = run_python(script, var_dir, REDIS_URL="redis://cache.internal:6380/2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        "redis://cache.internal:6380/2", "redis://cache.internal:6380/2", True]


def test_qdrant_url_is_passed_through(var_dir):
    config = settings_for(var_dir, QDRANT_URL="http://qdrant.internal:6333")
    assert config["QDRANT_URL"] == "http://qdrant.internal:6333"


def test_an_s3_bucket_selects_s3_media_storage(var_dir):
    config = settings_for(
        var_dir, AWS_STORAGE_BUCKET_NAME="shelf-media", AWS_S3_ENDPOINT_URL="http://minio.internal:9000",
        AWS_ACCESS_KEY_ID="key-id", AWS_SECRET_ACCESS_KEY="key-secret",
    )
    storage = config["STORAGES"]["default"]
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    options = storage["OPTIONS"]
    assert options["bucket_name"] == "shelf-media"
    assert options["endpoint_url"] == "http://minio.internal:9000"
    assert options["addressing_style"] == "path"
    assert (options["access_key"], options["secret_key"]) == ("key-id", "key-secret")


def test_s3_media_storage_round_trips_through_an_s3_endpoint(var_dir):
    """The configured storage really stores: Django's default storage writes to and reads from the bucket."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        script = (
            "import json, boto3, django\n"
            "django.setup()\n"
            "from django.conf import settings\n"
            "from django.core.files.base import ContentFile\n"
            "from django.core.files.storage import storages\n"
            "default_storage = storages['default']\n"
            "boto3.client('s3', endpoint_url=settings.AWS_S3_ENDPOINT_URL, region_name='us-east-1',\n"
            "             aws_access_key_id='k', aws_secret_access_key='s').create_bucket(Bucket='shelf-media')\n"
            "name = default_storage.save('frames/a.jpg', ContentFile(b'pixels'))\n"
            "with default_storage.open(name) as handle:\n"
            "    data = handle.read().decode()\n"
            "print(json.dumps({'class': type(default_storage).__name__, 'name': name, 'data': data,\n"
            "                  'url': default_storage.url(name)}))\n"
        )
        result = run_python(
            script, var_dir, AWS_STORAGE_BUCKET_NAME="shelf-media", AWS_S3_ENDPOINT_URL=f"http://{host}:{port}",
            AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_S3_REGION_NAME="us-east-1",
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout.strip().splitlines()[-1])
    assert stored["class"] == "S3Storage"
    assert stored["data"] == "pixels"
    # Path-style, signed URLs on the configured endpoint.
    assert stored["url"].startswith(f"http://{host}:{port}/shelf-media/{stored['name']}?")
    assert "Signature=" in stored["url"] or "X-Amz-Signature=" in stored["url"]
    assert not (var_dir / "media").exists()


# ------------------------------------------------------------------ static checks of the layering


ENV_READ = re.compile(
    # Writing a variable for a library that reads it (ultralytics) is not reading the environment.
    r"os\.getenv\(|os\.environ\.get\(|os\.environ\[[^]]+\](?!\s*=[^=])|os\.environ\.(copy|items|keys|values)\(|"
    r"from\s+os\s+import\s+[^\n]*\b(getenv|environ)\b"
)


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (REPO_ROOT / folder).rglob("*.py"))


def test_only_settings_read_the_environment():
    files = python_files("annotator", "inference", "frontend")
    assert any(path.parts[-2:] == ("services", "ingest.py") for path in files)  # the scan sees the code
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if ENV_READ.search(line)
    ]
    assert offenders == []


def test_the_environment_scan_catches_reads():
    for line in ('x = os.getenv("A")', 'os.environ.get("A")', 'os.environ["A"]', "from os import getenv",
                 "from os import path, environ"):
        assert ENV_READ.search(line), line
    assert not ENV_READ.search("settings.AWS_S3_ENDPOINT_URL")


FORBIDDEN_IN_INFERENCE = {"django", "rest_framework", "drf_spectacular", "celery", "kombu", "storages", "annotator",
                          "backend"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in {
                "import_module", "__import__"} and node.args and isinstance(node.args[0], ast.Constant):
            roots.add(str(node.args[0].value).split(".")[0])
    return roots


def test_inference_knows_nothing_of_django_celery_or_the_app():
    files = python_files("inference")
    assert files
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(imported_roots(path) & FORBIDDEN_IN_INFERENCE) for path in files
    }
    assert {name: found for name, found in offenders.items() if found} == {}


# ------------------------------------------------------------------ the production shape (docker-compose.yml)


def settings_variables() -> set[str]:
    """Names backend/settings.py reads through its env helpers."""
    source = (REPO_ROOT / "backend" / "settings.py").read_text()
    return set(re.findall(r"\benv(?:_bool|_int|_float|_list|_choice)?\(\s*\"([A-Z0-9_]+)\"", source))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_sets_only_variables_the_settings_read(compose):
    known = settings_variables()
    assert {"DATABASE_URL", "REDIS_URL", "QDRANT_URL", "INGEST_S3_BUCKET", "DJANGO_SECRET_KEY"} <= known
    app_services = {name: service for name, service in compose["services"].items() if "build" in service}
    assert set(app_services) == {"web", "worker", "learner", "beat"}
    for name, service in app_services.items():
        environment = service["environment"]
        names = set(environment) if isinstance(environment, dict) else {item.split("=")[0] for item in environment}
        assert {"DATABASE_URL", "REDIS_URL", "QDRANT_URL", "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "INGEST_S3_BUCKET", "DJANGO_SECRET_KEY",
                "DJANGO_ALLOWED_HOSTS", "DJANGO_CSRF_TRUSTED_ORIGINS"} <= names, name
        assert names - known <= {"DJANGO_SETTINGS_MODULE"}, name


def test_compose_runs_commands_that_exist(compose):
    from django.core.management import get_commands

    commands = set(get_commands())
    for name in ("web", "worker", "learner", "beat"):
        command = compose["services"][name]["command"]
        text = command if isinstance(command, str) else shlex.join(command)
        for used in re.findall(r"manage\.py\s+([a-z_]+)", text):
            assert used in commands, (name, used)
        for app in re.findall(r"celery\s+-A\s+(\S+)", text):
            assert app == "backend" and (REPO_ROOT / "backend" / "celery.py").is_file()
    assert "worker" in shlex.join(compose["services"]["worker"]["command"])
    assert " beat" in shlex.join(compose["services"]["beat"]["command"])
    for name, service in compose["services"].items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in compose["services"], (name, dependency)
            assert condition["condition"] in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in compose["services"][dependency], (name, dependency)


def test_a_bad_learning_schedule_or_config_is_refused_at_start(var_dir, tmp_path):
    result = run_python(PRINT_SETTINGS, var_dir, LEARN_SCHEDULE="nightly")
    assert result.returncode != 0 and "LEARN_SCHEDULE must be 5 cron fields or 'off'" in result.stderr
    config = tmp_path / "learn.json"
    config.write_text("[1, 2]")
    result = run_python(PRINT_SETTINGS, var_dir, LEARN_CONFIG=str(config))
    assert result.returncode != 0 and "must hold a JSON object" in result.stderr


@pytest.mark.parametrize(("env", "message"), [
    ({"EMBEDDER_RUNTIME": "onnx-int4"}, "EMBEDDER_RUNTIME must be one of onnx, torch, not 'onnx-int4'"),
    ({"PIPELINE_VERSION": "v9"}, "PIPELINE_VERSION must be one of v0, v1, v2, v3, not 'v9'"),
    ({"KNN_NEIGHBOURS": "ten"}, "KNN_NEIGHBOURS must be a whole number, not 'ten'"),
    ({"TOP_K_CANDIDATES": "0"}, "TOP_K_CANDIDATES must be at least 1, not 0"),
    ({"DETECTOR_CONFIDENCE": "1.5"}, "DETECTOR_CONFIDENCE must be between 0 and 1, not 1.5"),
    ({"LEARN_BUDGET_MINUTES": "soon"}, "LEARN_BUDGET_MINUTES must be a number, not 'soon'"),
])
def test_a_bad_value_stops_start_up_with_one_line_naming_the_variable(var_dir, env, message):
    result = run_python(PRINT_SETTINGS, var_dir, **env)
    assert result.returncode != 0
    assert message in result.stderr.strip().splitlines()[-1]
