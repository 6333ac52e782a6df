"""Start the studio: `uv run app.py [--host H] [--port P] [--root-path /studio] [--no-ui] ...`.

The code lives in ``modelmgr/web/studio.py`` so the installed console script
``whisperx-studio`` runs the same thing.
"""

from __future__ import annotations

from modelmgr.web.studio import main, parse_args  # noqa: F401  (parse_args re-exported)

if __name__ == "__main__":
    main()
