"""Bundling: a Whisper model brings the alignment models its languages need, and a diarization
pipeline the models it runs.

A Whisper job remembers the alignment models that were missing or incomplete when it was
asked for; when it completes they are started through the same ``start`` path, so they run
after it, one at a time with the default limit, and are deduplicated like any other request.
A diarization pipeline (always, whatever ``with_align`` says: it cannot run without them)
brings the models its downloaded config.yaml names (``pipeline_parts``; the catalog's list
until the file is on disk): the job starts with the catalog's list and the worker reads the
config.yaml it has just fetched before the bundle starts.
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
from modelmgr.models.pipeline_parts import pipeline_parts
from modelmgr.models.store import Store

log = logging.getLogger(__name__)


def missing_aligns(catalog: Catalog, store: Store, spec: ModelSpec, languages: list[str]) -> list[str]:
    """The alignment models for ``languages`` that are not fully on disk (reads the disk)."""
    return [
        a.id for a in catalog.align_models_for(spec, languages) if store.local_state(a).status != "downloaded"
    ]


def parts_of(catalog: Catalog, store: Store, spec: ModelSpec) -> list[ModelSpec]:
    """The models a diarization pipeline runs ([] for any other model; reads the disk).

    A config.yaml that cannot be read, or that names a model the catalog does not know, falls
    back to the catalog's list (logged): bundling never breaks a download; loading the pipeline
    says what is wrong with its config.
    """
    if not spec.is_diarizer:
        return []
    try:
        return pipeline_parts(catalog, store, spec)
    except Exception as exc:  # unreadable YAML, an unknown repo id: the catalog's list stands in
        log.warning(
            "%s: the models its config.yaml names are unknown (%s); using the catalog's", spec.id, exc
        )
        return [catalog.get(part) for part in spec.parts]


def missing_parts(catalog: Catalog, store: Store, spec: ModelSpec) -> list[str]:
    """A pipeline's models that are not fully on disk (reads the disk)."""
    return [p.id for p in parts_of(catalog, store, spec) if store.local_state(p).status != "downloaded"]


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
