"""WhisperX Studio: a model manager, a transcription service, a web UI, an API and a CLI.

Layers, top to bottom; each imports only those below it (tests/test_layers.py checks)::

    web/, cli/     the ways in (FastAPI + Gradio, the command line)
    services.py    the composition root: every manager of one process, built from Settings
    distributed/   Celery workers, Redis state, the remote job manager
    asr/           loaders, leases, the speech pipeline, the job manager
    models/        the cache on disk, hub metadata, how bytes arrive, the download manager
    core/          settings, errors, events, the catalog
"""
