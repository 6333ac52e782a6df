"""The web way in: FastAPI routes, SSE, security, the Gradio UI, and the process that serves them.

``server`` (create_app: API first, Gradio mounted last), ``studio`` (args -> Settings -> server),
``http_errors`` (typed errors -> HTTP statuses, in one table), ``security`` (Host, Origin, token),
``rootpath``, ``share``, ``api/`` (``routes``: models, preload, events, system; ``transcriptions``:
the jobs API; ``openai``: ``/v1/audio/transcriptions`` and friends; ``docs``), ``ui/`` (``wiring``:
Gradio Blocks; ``views``: pure HTML/text of the snapshots).
May import ``modelmgr.services`` and every layer below it; nothing imports it but the entry points.
"""
