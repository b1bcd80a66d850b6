"""Serve the app (gunicorn) together with a Celery worker, and stop both together."""
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server and a Celery worker until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--beat", action="store_true", help="also run Celery beat (periodic S3 ingestion)")

    def handle(self, *args, host, port, web_workers, beat, **options):
        python = sys.executable
        # The embedded Qdrant store allows one process: a single worker process owns it, and so takes
        # every queue (a learning round then holds it for its budget; production gives it a worker).
        queues = ",".join(sorted({"celery", settings.PRELABEL_QUEUE, settings.LEARN_QUEUE}))
        commands = {
            "worker": [python, "-m", "celery", "-A", "backend", "worker", "--pool", "solo", "-Q", queues, "-l", "info"],
            "web": [python, "-m", "gunicorn", "backend.wsgi", "--bind", f"{host}:{port}",
                    "--workers", str(web_workers), "--access-logfile", "-"],
        }
        if beat:
            commands["beat"] = [python, "-m", "celery", "-A", "backend", "beat", "-l", "info"]
        processes = {name: subprocess.Popen(cmd, cwd=settings.BASE_DIR) for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"serving http://{host}:{port}/ with a worker; Ctrl-C stops both"))
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exited = None
        while not stopping and exited is None:
            exited = next((name for name, p in processes.items() if p.poll() is not None), None)
            time.sleep(0.5)
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if exited:
            self.stderr.write(f"{exited} exited with code {processes[exited].returncode}; stopped the others")
            sys.exit(1)
