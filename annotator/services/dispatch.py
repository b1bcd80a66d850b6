"""Sending Celery tasks by name: services never import ``annotator.tasks`` (which imports them)."""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def send_task(name: str, *args, **kwargs) -> bool:
    """Send ``name`` with ``args``/``kwargs``, routed as settings say; False (logged) when the broker
    is away: callers have committed, so the beat sweeps send it again later."""
    from backend.celery import app

    try:
        app.send_task(name, args=list(args), kwargs=kwargs or None)
    except Exception as error:  # kombu's OperationalError, or celery's RuntimeError from the result store
        logger.warning("could not send %s%s (%s)", name, tuple(args), error)
        return False
    return True
