"""Speech: loading models, leases on them, the pipeline and the transcription jobs.

``loaders`` (the one owner of torch / faster_whisper / whisperx imports), ``preload`` (what is
loaded, and the leases: Whisper + aligner + resolved device together), ``pipeline`` (decode ->
faster-whisper -> align or Whisper's word times -> Transcript), ``jobs`` (TranscriptionManager:
the in-process job queue), ``manager`` (the job-manager interface the API, UI and CLI use),
``subtitles`` (SRT / VTT / JSON / TXT), ``system`` (CPU, RAM, GPU, disk).
May import ``modelmgr.models`` and ``modelmgr.core``.
"""
