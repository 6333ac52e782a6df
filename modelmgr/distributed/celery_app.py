"""The Celery app shared by the web process (which only sends) and the workers (which run).

Deliberate choices (keep them):

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a job's message is acknowledged when the job
  has ended, so a worker that dies mid-job leaves it unacknowledged and Redis hands it out again.
* Redis's ``visibility_timeout`` is how long an unacknowledged message waits before it is re-queued:
  longer than the longest job (``visibility_timeout_s``). A re-delivery of a job that is still
  running is harmless anyway: the job's claim in Redis (state.py) stops a second run.
* ``worker_prefetch_multiplier`` 1 and the solo pool: one job at a time per worker (one per GPU),
  and no job waits in a busy worker's buffer while another worker is idle.
* Queues: ``default`` (every worker) and ``model.<id>`` (workers that have loaded that model). The
  web process routes a job to ``model.<id>`` when an idle worker has the model loaded.
* No result backend: job state lives in our own Redis records (state.py), results on the shared disk.
"""

from __future__ import annotations

from typing import Any

from modelmgr.core.settings import Settings

TASK = "modelmgr.transcribe"
DOWNLOAD_TASK = "modelmgr.download"  # sent to one worker's own queue: "download to all workers"
PRELOAD_TASK = "modelmgr.preload"  # "preload on worker X"
DEFAULT_QUEUE = "default"


def worker_queue(name: str) -> str:
    """Every worker also consumes its own queue, for actions aimed at it."""
    return f"worker.{name}"


def model_queue(model_id: str) -> str:
    return f"model.{model_id}"


def make_celery(settings: Settings) -> Any:
    from celery import Celery

    app = Celery("modelmgr", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for Redis to come back
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": settings.restore_interval_s,
            "unacked_restore_throttle": 1,
            "socket_timeout": settings.redis_timeout_s,
            "socket_connect_timeout": settings.redis_timeout_s,
        },
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    )
    return app
