"""Speech: loading models, leases on them, the pipeline and the transcription jobs.

* ``loaders``: the one owner of torch / faster_whisper / whisperx imports (once, in a worker thread).
* ``preload`` (PreloadManager) over ``preload_state`` (the shared fields, one lock), ``loading``
  (the load thread), ``leases`` (where the leases live: Whisper + aligner + resolved device
  handed to a job together) and ``aligners`` (aligners loaded on demand for a job's language).
* ``pipeline``: decode -> faster-whisper -> align or Whisper's word times -> Transcript.
* ``manager``: JobManager, the one interface the API, UI and CLI use (in-process or Celery).
* ``jobs`` (TranscriptionManager, the in-process one) over ``job_record`` (Job, options, the
  record's shape), ``job_options`` (validation), ``job_store`` (job folders on disk, retention),
  ``job_queue`` (one job at a time), ``job_runner`` (one job: download, lease, pipeline) and
  ``results`` (SRT / VTT / TXT rendered from the JSON).
* ``subtitles`` (the writers), ``system`` (CPU, RAM, GPU, disk).

May import ``modelmgr.models`` and ``modelmgr.core``.
"""
