"""What every layer may import: settings (read once), typed errors, the event bus, the catalog.

Owns configuration (``settings``), the error hierarchy (``errors``; HTTP statuses are mapped in
``web.http_errors``), ``events`` (EventBus: worker threads publish, each SSE client has its own
queue) and ``catalog`` (which models exist, from faster-whisper's and whisperx's own tables).
May import nothing else of modelmgr.
"""
