"""Distributed mode: transcription jobs run on Celery workers through Redis.

Only imported when ``settings.redis_url`` is set (``MODELMGR_REDIS_URL`` / ``--redis-url``);
the embedded default never imports Celery or redis.

* ``state.py``       the shared job records (a Redis hash per job + an index), claims, cancel flags,
                     worker heartbeats, the event channel.
* ``celery_app.py``  the Celery app: late acks, prefetch 1, queues (one per model + ``default``).
* ``jobs.py``        RemoteTranscriptionManager: the JobManager interface (asr/manager.py) for a web process.
* ``relay.py``       Redis pub/sub -> the web process's own EventBus (its own increasing ids).
* ``worker.py``      ``python -m modelmgr worker``: the Celery worker and its task.

May import ``modelmgr.asr``, ``modelmgr.models`` and ``modelmgr.core``; ``worker`` is a process
entry point and also builds ``modelmgr.services``.
"""
