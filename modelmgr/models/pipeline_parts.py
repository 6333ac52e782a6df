"""Which models a diarization pipeline runs: the repo ids its ``config.yaml`` names.

pyannote's pipeline config names its segmentation and embedding models by Hub repo id
(``pipeline.params.segmentation: pyannote/segmentation-3.0``, possibly ``@revision``). The
studio fetches those itself, through the DownloadManager, and hands pyannote local paths,
so pyannote never downloads anything. Until the pipeline's own config.yaml is on disk the
catalog's list stands in (what the Models tab shows before a download).
"""

from __future__ import annotations

from pathlib import Path

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import PreloadFailed
from modelmgr.models.store import Store

CONFIG = "config.yaml"
MODEL_KEYS = ("segmentation", "embedding")  # the params of pyannote's SpeakerDiarization that name models


def named_models(config: Path) -> dict[str, str]:
    """``{param: repo id}`` for the models the pipeline config names by repo id (not by path)."""
    import yaml

    data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    params = (data.get("pipeline") or {}).get("params") or {}
    return {
        key: str(params[key])
        for key in MODEL_KEYS
        if isinstance(params.get(key), str) and "/" in params[key] and not Path(params[key]).is_absolute()
    }


def config_path(store: Store, spec: ModelSpec) -> Path | None:
    """The pipeline's downloaded config.yaml, or None while it is not on disk."""
    folder = store.model_path(spec) if store.local_state(spec).status == "downloaded" else None
    path = folder / CONFIG if folder is not None else None
    return path if path is not None and path.is_file() else None


def pipeline_parts(catalog: Catalog, store: Store, spec: ModelSpec) -> list[ModelSpec]:
    """The catalog entries of the models ``spec`` (a diarization pipeline) runs.

    From its config.yaml once downloaded (a repo id the catalog does not know is a PreloadFailed
    naming it), else the catalog's list.
    """
    config = config_path(store, spec)
    if config is None:
        return [catalog.get(part) for part in spec.parts]
    parts = []
    for key, repo in named_models(config).items():
        part = catalog.part_for_repo(repo)
        if part is None:
            raise PreloadFailed(
                f"{spec.id}'s config.yaml names {repo!r} as its {key} model, which is not a diarization "
                "model the studio manages"
            )
        parts.append(part)
    return parts
