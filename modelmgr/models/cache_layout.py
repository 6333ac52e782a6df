"""Where a model's files live: huggingface_hub's cache layout, and torch.hub's checkpoints.

Files live in huggingface_hub's cache layout (``models--org--name/blobs``,
``snapshots/<commit>/...`` symlinks, ``refs/<revision>``, ``trees/<commit>.json``) so every
other HF tool finds them, and torchaudio bundles live where ``torch.hub`` caches them. This
module only names paths and reads the small pointers (refs) that choose between them; what
the files say about a model being whole is the store's business.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from modelmgr.core.catalog import ModelSpec
from modelmgr.models.manifests import FileEntry, Manifest

PARTIAL_SUFFIX = ".incomplete"  # huggingface_hub's own suffix for blobs in flight


@dataclass(frozen=True)
class Target:
    """Where one file of a manifest is written: partial first, then the final blob."""

    entry: FileEntry
    final: Path
    partial: Path
    lock: Path  # a cross-process file lock: one writer per partial, even across processes


def file_size(path: Path) -> int | None:
    """The size of ``path`` (None: it is not there, or cannot be read)."""
    try:
        return path.stat().st_size
    except OSError:
        return None


class CacheLayout:
    def __init__(self, hub_cache: Path, checkpoints: Path, locks: Path) -> None:
        self.hub_cache = hub_cache
        self.checkpoints = checkpoints
        self.locks = locks  # our file locks for torchaudio checkpoints (HF blobs use the hub's)

    def repo_dir(self, spec: ModelSpec) -> Path:
        return self.hub_cache / ("models--" + spec.repo_id.replace("/", "--"))

    def checkpoint(self, spec: ModelSpec) -> Path:
        """A torchaudio bundle's checkpoint file."""
        return self.checkpoints / (spec.filename or "")

    def tree_file(self, spec: ModelSpec, commit: str) -> Path:
        """huggingface_hub's record of the files of ``commit``."""
        return self.repo_dir(spec) / "trees" / f"{commit}.json"

    def targets(self, spec: ModelSpec, manifest: Manifest) -> list[Target]:
        out = []
        for entry in manifest.files:
            if spec.source == "torchaudio":
                final = self.checkpoints / entry.path
                lock = self.locks / f"{entry.path}.lock"
            else:
                final = self.repo_dir(spec) / "blobs" / entry.etag
                # huggingface_hub's own lock place, so its downloads and ours never interleave
                lock = self.hub_cache / ".locks" / self.repo_dir(spec).name / f"{entry.etag}.lock"
            out.append(Target(entry, final, final.with_name(final.name + PARTIAL_SUFFIX), lock))
        return out

    def snapshot_dir(self, spec: ModelSpec, commit: str | None) -> Path | None:
        if commit is None:
            ref = self.repo_dir(spec) / "refs" / spec.revision
            if not ref.is_file():
                return None
            commit = ref.read_text().strip()
        return self.repo_dir(spec) / "snapshots" / commit

    def has_snapshot(self, spec: ModelSpec, commit: str | None) -> bool:
        return commit is not None and (self.repo_dir(spec) / "snapshots" / commit).is_dir()

    def ref_commit(self, spec: ModelSpec) -> str | None:
        """The commit ``refs/<revision>`` points at: the one every HF loader uses."""
        if spec.source != "hf":
            return None
        try:
            return (self.repo_dir(spec) / "refs" / spec.revision).read_text().strip() or None
        except OSError:
            return None

    def placed_files(self, spec: ModelSpec, manifest: Manifest) -> list[Path]:
        """Where a loader looks for each file (the snapshot link, or the checkpoint)."""
        if spec.source == "torchaudio":
            return [self.checkpoints / f.path for f in manifest.files]
        snap = self.snapshot_dir(spec, manifest.commit)
        return [snap / f.path if snap else Path("/nonexistent") for f in manifest.files]

    # --- the disk under the cache ---
    def _existing_cache_parent(self) -> Path:
        path = self.hub_cache
        while not path.exists() and path != path.parent:
            path = path.parent
        return path

    def free_bytes(self) -> int:
        """Free space on the disk that holds the cache (its nearest existing parent)."""
        return shutil.disk_usage(self._existing_cache_parent()).free

    def disk_total_bytes(self) -> int:
        return shutil.disk_usage(self._existing_cache_parent()).total
