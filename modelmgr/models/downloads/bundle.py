"""Bundling: a Whisper model brings the alignment models its languages need.

A Whisper job remembers the alignment models that were missing or incomplete when it was
asked for; when it completes they are started through the same ``start`` path, so they run
after it, one at a time with the default limit, and are deduplicated like any other request.
Kept apart from the manager because the rule (which models, and that one failing to start
does not skip the others) is the same for the request path, the worker and the views.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import ModelMgrError
from modelmgr.core.settings import Settings
from modelmgr.models.downloads.jobs import Job, StartResult
from modelmgr.models.store import Store

log = logging.getLogger(__name__)


def missing_aligns(catalog: Catalog, store: Store, spec: ModelSpec, languages: list[str]) -> list[str]:
    """The alignment models for ``languages`` that are not fully on disk (reads the disk)."""
    return [
        a.id for a in catalog.align_models_for(spec, languages) if store.local_state(a).status != "downloaded"
    ]


def bundle_of(catalog: Catalog, settings: Settings, spec: ModelSpec, job: Job | None) -> list[str]:
    """The alignment models shown with a model: its job's bundle, else those of its languages."""
    if spec.kind != "whisper":
        return []
    if job and job.bundle:
        return list(job.bundle)
    langs = [spec.language] if spec.language else settings.default_languages
    return [a.id for a in catalog.align_models_for(spec, langs)]


def start_bundle(start: Callable[..., StartResult], align_ids: Iterable[str]) -> None:
    """Start each alignment model through ``start``; one failing to start does not skip the others."""
    for align_id in align_ids:
        try:
            start(align_id, with_align=False)
        except ModelMgrError as exc:
            log.warning("alignment model %s was not started: %s", align_id, exc.message)
