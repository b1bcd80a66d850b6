"""Celery tasks: thin, idempotent wrappers around services; each task is safe to run twice.

Late acks (settings): a task whose pool process dies is delivered again at once, and on Redis one
whose whole worker dies comes back after ``CELERY_VISIBILITY_TIMEOUT``. The filesystem broker deletes
a message as it hands it over, so there a killed worker's task is gone: ``requeue_stalled_frames``
(beat) queues again any frame whose pre-labelling claim is too old (its run died or hangs, or its
task could not be sent), whatever the broker."""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from annotator import engines
from annotator.models import Frame
from annotator.services import ingest, learning, prelabel, prelabel_queue, search_index
from inference.images import ImageError

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=3, default_retry_delay=10)
def prelabel_frame(self, frame_id: int) -> int | None:
    try:
        # The task's id lets a delivery of this task again (its worker died) take over its own claim at once.
        prelabel.prelabel_frame(frame_id=frame_id, run_id=self.request.id)
    except Frame.DoesNotExist:
        logger.info("frame %s no longer exists; nothing to pre-label", frame_id)
        return None
    except prelabel.ClaimLost as lost:
        logger.info("%s", lost)  # another run pre-labels it: not a failure, nothing to retry
        return None
    except ImageError:
        raise  # the frame is marked failed with its reason; retrying cannot help
    except Exception as error:
        logger.warning("pre-labelling frame %s failed (%s); retrying", frame_id, error)
        raise self.retry(exc=error)
    return frame_id


DELIVERY_RETRY_SECONDS = 10  # then 20, 40: a short outage is bridged, a long one left to beat's sweep


@shared_task(bind=True, max_retries=3)
def deliver_search_outbox(self, company_id: int | None = None) -> int:
    # A bounded retry: while Qdrant is away every sweep (each minute) and every submit would
    # otherwise leave a task retrying for ever. The rows wait in the outbox; the sweep delivers them.
    try:
        return search_index.deliver_outbox(company_id=company_id)
    except Exception as error:
        if self.request.retries >= self.max_retries:
            logger.warning("search-space delivery failed %s times (%s); beat's sweep delivers later",
                           self.request.retries + 1, error)
        raise self.retry(exc=error, countdown=DELIVERY_RETRY_SECONDS * 2 ** self.request.retries)


@shared_task
def ingest_s3_frames(bucket: str, prefix: str = "") -> list[int]:
    report = ingest.ingest_s3(
        client=engines.s3_client(settings.INGEST_S3_ENDPOINT_URL), bucket=bucket, prefix=prefix,
        queue=lambda frame_id: prelabel_queue.queue_prelabelling(frame_id=frame_id),
    )
    return report.registered


@shared_task
def requeue_stalled_frames() -> list[int]:
    return prelabel_queue.requeue_stalled_frames(older_than=timedelta(minutes=settings.PRELABEL_STALL_MINUTES))


@shared_task
def schedule_learning() -> list[int]:
    """Beat, on LEARN_SCHEDULE: a round for every company with enough labels, one at a time (the
    learning queue's worker runs one task at a time)."""
    return learning.queue_rounds()


@shared_task(acks_late=False)
def learn_company(company_id: int) -> int | None:
    # Not acknowledged late: a round killed midway is marked stalled and runs again on the next
    # schedule, instead of being handed out again at once.
    learning_round = learning.learn_scheduled(company_id=company_id)
    return learning_round.pk if learning_round else None


@shared_task(bind=True, max_retries=3, default_retry_delay=60)
def reindex_model_set(self, model_set_id: int) -> None:
    try:
        learning.promote_by_id(model_set_id=model_set_id)
    except learning.LearningError:
        raise
    except Exception as error:
        raise self.retry(exc=error)


@shared_task
def resume_reindexing() -> list[int]:
    return learning.resume_stalled_builds(older_than=timedelta(minutes=settings.LEARN_STALL_MINUTES))
