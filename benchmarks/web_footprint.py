"""A web worker's memory and first request: the web as it serves, beside the same web with the model
runtimes imported (as it was when the URLs reached ``annotator/engines.py``), in one run.

    .venv/bin/python benchmarks/web_footprint.py [--requests 20]

Builds a throwaway SQLite database with an annotator, then for each variant starts one gunicorn
worker on a free loopback port (without gunicorn in the venv, the WSGI app under wsgiref in a
subprocess) and measures: the worker's boot (the app imported, as gunicorn does before serving), its
first request (the login page: Django imports the URLs, views and everything they import on it),
the median of the next requests, and the worker's resident memory after serving the login page,
the frames list, the frame API and the reports page as a logged-in annotator. Goals: under 150 MB
and under 0.5 s for the first request.
"""
from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "footprint-bench-password-1"
# What engines.py used to bring into every web worker: torch and timm (the embedder), onnxruntime.
MODEL_RUNTIMES = ("torch", "timm", "onnxruntime")


def with_model_runtimes(environ, start_response):
    """The app, imported with the model runtimes on its first request, as the URLs used to do."""
    import importlib

    for name in MODEL_RUNTIMES:
        importlib.import_module(name)
    from backend.wsgi import application

    return application(environ, start_response)


# Gunicorn's hook, in a config file: says when the worker has imported the app, and its pid.
GUNICORN_CONFIG = '''
def post_worker_init(worker):
    print(f"worker-ready {worker.pid}", flush=True)
'''
# Without gunicorn: the app under wsgiref, in a process of its own.
WSGIREF_SERVER = '''
import os, sys
from wsgiref.simple_server import WSGIRequestHandler, make_server
sys.path.insert(0, {benchmarks!r})
module, name = {app!r}.split(":")
application = getattr(__import__(module, fromlist=[name]), name)
class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass
server = make_server("127.0.0.1", {port}, application, handler_class=Quiet)
print(f"worker-ready {{os.getpid()}}", flush=True)
server.serve_forever()
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def prepare(scratch: Path, environment: dict[str, str]) -> None:
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=environment, check=True)
    seed = ("from annotator.services.locations import get_or_create_company, get_or_create_shelf;"
            "from annotator.services.users import create_user;"
            "company = get_or_create_company(name='footprint');"
            "get_or_create_shelf(company=company, store_code='store-1', camera_code='cam-1', shelf_code='shelf-1');"
            f"create_user(username='annotator', password={PASSWORD!r}, role='annotator', company=company)")
    subprocess.run([*manage, "shell", "-c", seed], cwd=ROOT, env=environment, check=True)


def start(app: str, port: int, environment: dict[str, str], scratch: Path) -> tuple[subprocess.Popen, int, float]:
    """Start one worker serving ``app``; returns the process, the worker's pid and its boot time."""
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        command = [sys.executable, "-c", WSGIREF_SERVER.format(benchmarks=str(ROOT / "benchmarks"), app=app, port=port)]
    else:
        config = scratch / "gunicorn_footprint.py"
        config.write_text(GUNICORN_CONFIG)
        command = [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers", "1",
                   "--pythonpath", str(ROOT / "benchmarks"), "-c", str(config), "--log-level", "warning"]
    began = time.perf_counter()
    server = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, text=True)
    for line in server.stdout:
        if line.startswith("worker-ready"):
            return server, int(line.split()[1]), time.perf_counter() - began
    raise RuntimeError(f"{app} exited with {server.wait()} before serving")


def timed_get(opener, url: str) -> float:
    began = time.perf_counter()
    with opener.open(url, timeout=120) as response:
        response.read()
    return time.perf_counter() - began


def log_in(opener, base: str) -> None:
    with opener.open(f"{base}/accounts/login/") as response:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.read().decode()).group(1)
    form = urllib.parse.urlencode({"username": "annotator", "password": PASSWORD, "csrfmiddlewaretoken": token})
    request = urllib.request.Request(f"{base}/accounts/login/", data=form.encode(), headers={"Referer": base + "/"})
    with opener.open(request) as response:
        if "/accounts/login/" in response.url:
            raise RuntimeError("the benchmark's annotator could not log in")


def measure(app: str, environment: dict[str, str], scratch: Path, requests: int) -> dict[str, float | int]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server, pid, boot = start(app, port, environment, scratch)
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        first = timed_get(opener, f"{base}/accounts/login/")
        later = statistics.median(timed_get(opener, f"{base}/accounts/login/") for _ in range(requests))
        log_in(opener, base)
        for page in ("/", "/api/frames/", "/reports/"):
            timed_get(opener, base + page)
        return {"boot": boot, "first": first, "later": later, "rss": rss_mb(pid),
                "runtimes": loaded_runtimes(pid)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def loaded_runtimes(pid: int) -> int:
    """How many of the model runtimes' shared libraries the worker has mapped (0: none loaded)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sum(1 for name in ("libtorch", "onnxruntime") if name in maps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests timed after the first")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="web-footprint-"))
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_", "QDRANT_", "CELERY_"))}
    environment.update(VAR_DIR=str(scratch / "var"), DJANGO_SETTINGS_MODULE="backend.settings")
    prepare(scratch, environment)
    variants = {"web": "backend.wsgi:application", f"+ {', '.join(MODEL_RUNTIMES)}": "web_footprint:with_model_runtimes"}
    results = {name: measure(app, environment, scratch, args.requests) for name, app in variants.items()}
    server = "gunicorn, 1 worker" if _has_gunicorn() else "wsgiref (no gunicorn in the venv)"
    print(f"one web worker ({server}), SQLite; goal: < 150 MB, first request < 0.5 s")
    rows = [("worker RSS after 5 pages (MB)", "rss", "{:.0f}"), ("boot: app imported (s)", "boot", "{:.2f}"),
            ("first request: login page (s)", "first", "{:.2f}"),
            (f"median of the next {args.requests} (s)", "later", "{:.3f}"),
            ("runtime libraries mapped", "runtimes", "{:.0f}")]
    print(f"{'':34}" + "".join(f"{name:>26}" for name in results))
    for label, key, fmt in rows:
        print(f"{label:34}" + "".join(f"{fmt.format(result[key]):>26}" for result in results.values()))


def _has_gunicorn() -> bool:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
