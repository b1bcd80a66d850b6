"""A stand-in for the Celery app's ``send_task`` in tests: services send tasks by name."""
from __future__ import annotations

from collections.abc import Callable

PRELABEL_TASK = "annotator.tasks.prelabel_frame"


def prelabel_sent_to(callback: Callable[[int], object]):
    """A ``send_task`` that hands each frame id sent for pre-labelling to ``callback`` (which may raise,
    as a broker that is away does) and ignores other tasks."""

    def send_task(name, args=(), kwargs=None, **options):
        if name == PRELABEL_TASK:
            return callback(*args)
        return None

    return send_task
