"""Concurrent annotators against the real app server: latency per workspace endpoint, and errors.

    .venv/bin/python benchmarks/annotator_load.py [--annotators 10] [--duration 60] [--frames 400] [--boxes 20]
                                                  [--database-url URL]

Builds a throwaway VAR_DIR and database (SQLite in a temporary folder unless ``--database-url`` names
an empty one, e.g. a PostgreSQL database made for the run; its tables are dropped afterwards), migrates,
and seeds one company (a store, camera and shelf), a catalogue of 200 products and ``--frames``
READY, scheduled frames (small JPEGs drawn by tests.factories) with ``--boxes`` boxes each, every
box pre-labelled by a Prediction with 10 candidates, plus one "annotator" user per simulated annotator.

It then serves the app with gunicorn (``backend.wsgi``, 2 gthread workers x 4 threads, on a free port
of 127.0.0.1, its log kept to report tracebacks) and runs locust in this process, one user per
annotator, each with its own API token (``POST /api/auth/token/``). Each loops the workspace's flow
with no think time, so this is the server under as many concurrent clients as annotators: ``POST /api/frames/next/``
(a 204 means the queue is empty and stops that annotator), one or two catalogue type-aheads
(``GET /api/products/search/?q=<2 letters>&store=<id>``), then ``POST /api/frames/<id>/submit/``
with the JSON the browser sends: most suggestions confirmed, some corrected to a searched product,
an occasional box deleted. The run ends after ``--duration`` seconds or when every frame is done.

Each submit queues ``deliver_search_outbox`` on commit; with no REDIS_URL that is kombu's filesystem
broker writing a message file under VAR_DIR, so no worker (and no Qdrant) is needed or measured.

Prints per endpoint and in total (login apart: it is one password hash per annotator) the requests,
failures, p50 / p95 / p99 / max latency as locust's client saw it and the requests per second, then
the frames submitted and the command. An error is any response other than the endpoint's 200 (or
the queue's 204), any exception in a simulated annotator, a frame leased to two annotators at once,
database counts that disagree with the submits, or a traceback in the server's log; with any, the
script prints them and exits 1, so it also serves as a check. The load generator shares the
machine's CPUs with the server, and its time is in the latencies.
"""
from __future__ import annotations

# locust monkey-patches the standard library for gevent when imported: before anything else opens a socket.
import locust  # isort: skip

import argparse
import math
import os
import random
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import gevent
from locust.env import Environment
from locust.exception import StopUser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CATALOGUE_BRANDS = ["Alpen", "Bravo", "Cora", "Delta", "Eko", "Frisco", "Gala", "Hollan", "Ivory", "Juno"]
CATALOGUE_KINDS = ["Oat Milk", "Orange Juice", "Greek Yogurt", "Butter", "Cheddar", "Apple Juice", "Skyr", "Kefir",
                   "Cream", "Soy Drink"]
CATALOGUE_SIZES = ["500 ml", "1 L"]
CANDIDATES_PER_BOX = 10
CONFIRM_SHARE, CORRECT_SHARE = 0.85, 0.12  # the rest of the boxes are deleted
CELL_W, CELL_H = 32, 80  # pixels of a facing in the drawn frames
SERVER_WORKERS, SERVER_THREADS = 2, 4
ENDPOINTS = ("next", "search", "submit")
PROJECT_FRAME = re.compile(rf'\s*File "{re.escape(str(ROOT))}/(?P<path>(?:annotator|backend|inference)/[^"]+)", '
                           r'line (?P<line>\d+), in (?P<function>\S+)')


@dataclass(frozen=True)
class Account:
    username: str
    password: str


@dataclass
class Tally:
    """What the simulated annotators saw, filled by locust's request event and the users themselves."""

    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: Counter[str] = field(default_factory=Counter)
    failure_messages: Counter[tuple[str, str]] = field(default_factory=Counter)
    frames_submitted: int = 0
    holders: dict[int, str] = field(default_factory=dict)  # frame id -> the annotator it was leased to
    double_leases: list[str] = field(default_factory=list)

    def record(self, name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
        self.latencies_ms[name].append(response_time)
        if exception is not None:
            self.failures[name] += 1
            self.failure_messages[(name, str(exception)[:300])] += 1


def http_error(response: Any) -> str:
    return f"HTTP {response.status_code}: {' '.join(response.text.split())[:200]}"


class Annotator(locust.HttpUser):
    """One annotator labelling frame after frame, as the workspace does it."""

    wait_time = locust.constant(0)
    accounts: ClassVar[list[Account]] = []  # one per user, handed out at start by run_load
    tally: ClassVar[Tally]

    def on_start(self) -> None:
        account = self.accounts.pop()
        self.username = account.username
        self.rng = random.Random(account.username)
        with self.client.post("/api/auth/token/", json={"username": account.username, "password": account.password},
                              name="login", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(http_error(response))
                raise StopUser()
            self.client.headers["Authorization"] = f"Token {response.json()['token']}"

    def api(self, method: str, url: str, name: str, expected: tuple[int, ...] = (200,),
            **kwargs: Any) -> tuple[int, Any]:
        """The response's status and JSON (None for a failure), the failure recorded with the body's start."""
        with self.client.request(method, url, name=name, catch_response=True, allow_redirects=False,
                                 **kwargs) as response:
            if response.status_code not in expected:
                response.failure(http_error(response))
                return response.status_code, None
            return response.status_code, (response.json() if response.content else None)

    @locust.task
    def label_a_frame(self) -> None:
        status, frame = self.api("POST", "/api/frames/next/", "next", expected=(200, 204))
        if status == 204:
            raise StopUser()  # the queue is empty
        if frame is None:
            return
        holder = self.tally.holders.setdefault(frame["id"], self.username)
        if holder != self.username:
            self.tally.double_leases.append(f"frame {frame['id']} leased to {holder} and to {self.username}")
        found: list[dict] = []
        for _ in range(self.rng.randint(1, 2)):
            word = self.rng.choice(self.rng.choice(CATALOGUE_BRANDS + CATALOGUE_KINDS).split())
            _, products = self.api("GET", "/api/products/search/", "search",
                                   params={"q": word[:2].lower(), "store": frame["store_id"], "limit": 20})
            found.extend(products or [])
        status, _ = self.api("POST", f"/api/frames/{frame['id']}/submit/", "submit",
                             json={"boxes": [self.answer(box, found) for box in frame["boxes"]]})
        if status == 200:
            self.tally.frames_submitted += 1

    def answer(self, box: dict, found: list[dict]) -> dict:
        """The browser's answer for one box: confirmed, corrected (to a searched product or another
        candidate) or deleted; a box without a suggestion is always corrected."""
        spent = self.rng.randint(300, 6000)
        roll = self.rng.random()
        suggestion = box["suggestion"]
        if roll < CONFIRM_SHARE and suggestion is not None:
            return {"id": box["id"], "product_id": suggestion["id"], "time_spent_ms": spent}
        if roll < CONFIRM_SHARE + CORRECT_SHARE or suggestion is None:
            others = [p["id"] for p in found] or [c["product_id"] for c in box["candidates"][1:]]
            return {"id": box["id"], "product_id": self.rng.choice(others), "time_spent_ms": spent}
        return {"id": box["id"], "deleted": True, "time_spent_ms": spent}


@dataclass(frozen=True)
class Seed:
    products: int
    accounts: list[Account]
    boxes_per_frame: int


def seed(*, frames: int, boxes: int, annotators: int) -> Seed:
    """The company, catalogue, pre-labelled frames and annotators; bulk inserts, as 8000 boxes one by
    one would take most of the run's time."""
    from django.utils import timezone

    from annotator.models import Box, Frame, PipelineVersion, Prediction, Product
    from annotator.services.users import create_user
    from tests.factories import PALETTE, FrameFactory, ShelfFactory

    rng = random.Random(0)
    shelf = ShelfFactory()
    store = shelf.camera.store
    company = store.company
    names = [f"{brand} {kind} {size}" for brand in CATALOGUE_BRANDS for kind in CATALOGUE_KINDS
             for size in CATALOGUE_SIZES]
    products = Product.objects.bulk_create(Product(company=company, sku=f"sku-{i:04d}", name=name)
                                           for i, name in enumerate(names))
    version = PipelineVersion.objects.create(name="v2", config_digest="annotator-load")

    rows = max(1, int(math.sqrt(boxes / 4)))  # a shelf wider than high, as cameras see them
    columns = math.ceil(boxes / rows)
    cells = [(c * CELL_W, r * CELL_H) for r in range(rows) for c in range(columns)][:boxes]
    first_capture = timezone.now() - timedelta(minutes=30 * frames)
    new_boxes: list[Box] = []
    suggestions: list[list[Product]] = []
    for n in range(frames):
        picks = [rng.sample(products, CANDIDATES_PER_BOX) for _ in cells]
        rects = [(x + 1, y + 2, CELL_W - 2, CELL_H - 4) for x, y in cells]
        frame = FrameFactory(
            shelf=shelf, width=columns * CELL_W, height=rows * CELL_H, status=Frame.Status.READY, scheduled=True,
            captured_at=first_capture + timedelta(minutes=30 * n), confidence=rng.uniform(0.05, 0.6),
            blocks=[(rect, ranked[0].pk % len(PALETTE)) for rect, ranked in zip(rects, picks)])
        new_boxes.extend(Box(frame=frame, x=x, y=y, w=w, h=h, source=Box.Source.DETECTOR,
                             detector_score=rng.uniform(0.5, 0.99)) for x, y, w, h in rects)
        suggestions.extend(picks)
    Box.objects.bulk_create(new_boxes, batch_size=2000)
    predictions = []
    for box, ranked in zip(new_boxes, suggestions):
        scores = sorted((rng.uniform(0.3, 0.95) for _ in ranked), reverse=True)
        candidates = [{"product_id": p.pk, "score": s, "components": {"knn": s, "knn_mean": s - 0.05, "knn_count": 3.0,
                                                                     "realgram": 0.05}}
                      for p, s in zip(ranked, scores)]
        predictions.append(Prediction(box=box, pipeline_version=version, product=ranked[0], score=scores[0],
                                      candidates=candidates))
    Prediction.objects.bulk_create(predictions, batch_size=2000)

    accounts = [Account(f"annotator-{i:02d}", secrets.token_urlsafe(12)) for i in range(annotators)]
    for account in accounts:
        create_user(username=account.username, password=account.password, role="annotator", company=company)
    return Seed(products=len(products), accounts=accounts, boxes_per_frame=boxes)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def app_server(log_path: Path) -> Iterator[str]:
    """gunicorn serving ``backend.wsgi`` with this process's environment; yields its URL once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # --preload: the app is imported once, before the fork, so both workers answer the first requests.
    command = [sys.executable, "-m", "gunicorn", "backend.wsgi", "--preload", "--bind", f"127.0.0.1:{port}",
               "--worker-class", "gthread", "--workers", str(SERVER_WORKERS), "--threads", str(SERVER_THREADS)]
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/accounts/login/", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:  # refused, reset or timed out while the workers boot
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer in 60 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_load(*, url: str, accounts: list[Account], duration: float) -> tuple[Tally, float, list[str]]:
    """Locust's users against the server until ``duration`` passes or every annotator has stopped;
    returns the tally, the seconds it ran and the users' exceptions."""
    tally = Tally()
    Annotator.accounts = list(accounts)
    Annotator.tally = tally
    # At the deadline each annotator finishes the frame in hand, so that every submit the server
    # committed was also acknowledged (the database check counts on it).
    environment = Environment(user_classes=[Annotator], host=url, stop_timeout=30)
    environment.events.request.add_listener(tally.record)
    runner = environment.create_local_runner()
    started = time.perf_counter()
    runner.start(len(accounts), spawn_rate=len(accounts))
    while time.perf_counter() - started < duration:
        gevent.sleep(0.1)
        if runner.spawning_greenlet.ready() and runner.user_count == 0:
            break
    runner.quit()
    elapsed = time.perf_counter() - started
    exceptions = [f"{e['count']}x {e['msg']}\n{e['traceback']}" for e in runner.exceptions.values()]
    return tally, elapsed, exceptions


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def print_table(tally: Tally, elapsed: float) -> None:
    print(f"{'endpoint':<8} {'requests':>8} {'failures':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'req/s':>7}")
    rows = [(name, tally.latencies_ms.get(name, []), tally.failures[name]) for name in ("login", *ENDPOINTS)]
    rows.append(("total", [t for name in ENDPOINTS for t in tally.latencies_ms.get(name, [])],
                 sum(tally.failures[name] for name in ENDPOINTS)))
    for name, times, failures in rows:
        if not times:
            print(f"{name:<8} {0:8d} {failures:8d}")
            continue
        ordered = sorted(times)
        print(f"{name:<8} {len(ordered):8d} {failures:8d} {percentile(ordered, 0.5):8.1f} "
              f"{percentile(ordered, 0.95):8.1f} {percentile(ordered, 0.99):8.1f} {ordered[-1]:8.1f} "
              f"{len(ordered) / elapsed:7.1f}")


def database_disagreements(tally: Tally, boxes_per_frame: int) -> list[str]:
    """What the database holds against what the annotators were told: every acknowledged submit is
    one labelled frame with one current label per box, and nothing else is labelled."""
    from annotator.models import Frame, Label

    problems = []
    labelled = Frame.objects.filter(status=Frame.Status.LABELLED).count()
    if labelled != tally.frames_submitted:
        problems.append(f"{labelled} frames labelled in the database, {tally.frames_submitted} submits acknowledged")
    labels = Label.objects.filter(is_current=True).count()
    if labels != labelled * boxes_per_frame:
        problems.append(f"{labels} current labels for {labelled} labelled frames of {boxes_per_frame} boxes")
    return problems


def server_errors(log_text: str) -> tuple[Counter[str], str]:
    """The server log's errors, each traceback counted by its exception and the innermost line of the
    project it went through, each of gunicorn's error and critical lines (a worker timeout) by itself;
    and the first traceback in full."""
    lines = log_text.splitlines()
    errors: Counter[str] = Counter()
    first = ""
    i = 0
    while i < len(lines):
        if re.match(r"\[[^]]+\] \[\d+\] \[(ERROR|CRITICAL)\]", lines[i]):
            errors[re.sub(r"\d+", "N", lines[i].split("] ", 2)[-1])] += 1
        elif lines[i].startswith("Traceback"):
            end = traceback_end(lines, i)
            errors[f"{lines[end]}{innermost_project_frame(lines[i:end])}"] += 1
            if not first:
                # Django's "Internal Server Error: <path>" precedes the traceback it logs
                start = i - 1 if i and lines[i - 1].startswith("Internal Server Error") else i
                first = "\n".join(lines[start:end + 1])
            i = end
        i += 1
    return errors, first


def innermost_project_frame(traceback: list[str]) -> str:
    frames = [m for line in traceback if (m := PROJECT_FRAME.match(line))]
    return f" (at {frames[-1]['path']}:{frames[-1]['line']} in {frames[-1]['function']})" if frames else ""


def traceback_end(lines: list[str], start: int) -> int:
    """The index of the exception line that ends the traceback at ``start``, past any chained ones."""
    i = start + 1
    while i < len(lines):
        if lines[i].startswith(" "):
            i += 1
        elif i + 4 < len(lines) and not lines[i + 1] and lines[i + 2].startswith(("The above", "During handling")):
            i += 5  # the blank, the note, the blank and the next "Traceback" header
        else:
            return i
    return len(lines) - 1


def drop_tables() -> None:
    """Leave the database named by --database-url as empty as it was found."""
    from django.db import connection

    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        if not tables:
            return
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TABLE {', '.join(connection.ops.quote_name(t) for t in tables)} CASCADE")
        else:
            connection.disable_constraint_checking()
            for table in tables:
                cursor.execute(f"DROP TABLE {connection.ops.quote_name(table)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=10)
    parser.add_argument("--duration", type=float, default=60, help="seconds of load at most")
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--boxes", type=int, default=20, help="boxes per frame")
    parser.add_argument("--database-url", help="an empty database to use (default: SQLite in a temporary folder)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="annotator-load-"))
    os.environ["VAR_DIR"] = str(scratch)
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{scratch}/bench.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "backend.settings"
    os.environ["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1"
    os.environ.pop("REDIS_URL", None)  # submits queue to the filesystem broker in VAR_DIR, which nobody reads
    migrated = False
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection, connections

        if args.database_url and connection.introspection.table_names():
            sys.exit(f"{args.database_url} is not empty; give an empty database")
        migrated = True
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        seeded = seed(frames=args.frames, boxes=args.boxes, annotators=args.annotators)
        print(f"seeded {args.frames} frames x {args.boxes} boxes, {seeded.products} products, "
              f"{args.annotators} annotators on {connection.vendor} in {time.perf_counter() - started:.1f} s",
              flush=True)
        connections.close_all()  # the server's workers have the database to themselves

        log_path = scratch / "server.log"
        with app_server(log_path) as url:
            print(f"{args.annotators} annotators against gunicorn ({SERVER_WORKERS} workers x {SERVER_THREADS} "
                  f"threads) at {url} for up to {args.duration:g} s", flush=True)
            tally, elapsed, exceptions = run_load(url=url, accounts=seeded.accounts, duration=args.duration)
        logged, first_traceback = server_errors(log_path.read_text(errors="replace"))
        disagreements = database_disagreements(tally, seeded.boxes_per_frame)

        print(f"\nran {elapsed:.1f} s; latency as the client saw it; total is next + search + submit")
        print_table(tally, elapsed)
        print(f"frames submitted: {tally.frames_submitted} of {args.frames} "
              f"({tally.frames_submitted / elapsed:.1f} a second, {tally.frames_submitted * args.boxes} boxes)")
        print(f"command: {shlex.join(sys.orig_argv)}")

        errors = {"failed requests": sum(tally.failures.values()), "exceptions in the annotators": len(exceptions),
                  "frames leased twice": len(tally.double_leases), "database disagreements": len(disagreements),
                  "errors in the server's log": sum(logged.values())}
        if not any(errors.values()):
            return
        print(f"\nERRORS: {', '.join(f'{count} {kind}' for kind, count in errors.items() if count)}")
        for (name, message), count in tally.failure_messages.most_common(10):
            print(f"  {count}x {name}: {message}")
        for problem in [*exceptions, *tally.double_leases[:10], *disagreements]:
            print(f"  {problem}")
        for line, count in logged.most_common(10):
            print(f"  {count}x in the server's log: {line}")
        if first_traceback:
            print(f"\nthe server's first traceback:\n{first_traceback}")
        sys.exit(1)
    finally:
        if args.database_url and migrated:
            drop_tables()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
