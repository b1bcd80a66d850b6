# The shelf annotator: one image for the web app, the Celery worker and Celery beat (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Settings keep their local state here (beat schedule, collected static files); nothing else is written.
    VAR_DIR=/app/var \
    # ultralytics: never fetch or pip-install anything at run time; its settings live in the app's folder.
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=False \
    YOLO_CONFIG_DIR=/app/var/ultralytics

# opencv-python (pulled in by ultralytics) needs libGL and GLib at import.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# torch and torchvision first, from PyTorch's CPU-only index at exactly the versions requirements.txt pins
# (PyPI's Linux wheels carry several GB of CUDA libraries this image never uses). The local "+cpu" build
# satisfies the "==" pins, so the second step keeps it. Build with --build-arg TORCH_INDEX_URL= to take
# PyPI's build instead (e.g. for a GPU worker image).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY requirements.txt ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" $(grep -E '^(torch|torchvision)==' requirements.txt); \
    fi \
    && pip install -r requirements.txt

COPY . .

# `make static`: the UI has no build step; its sources are copied where Django collects static files from.
# var/celery holds beat's schedule file; settings create that folder only for the filesystem broker.
RUN mkdir -p static/annotator \
    && cp -r frontend/src/. static/annotator/ \
    && useradd --create-home --uid 1000 app \
    && mkdir -p "$VAR_DIR/celery" \
    && chown -R app:app "$VAR_DIR"

USER app

EXPOSE 8000

# docker-compose.yml gives each service its command; this default serves the web app.
CMD ["sh", "-c", "python manage.py migrate --no-input && python manage.py collectstatic --no-input -v 0 && exec python manage.py runserver 0.0.0.0:8000 --noreload"]
