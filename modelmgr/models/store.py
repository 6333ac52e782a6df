"""What is on disk: the HF cache inventory, manifests, completeness, delete.

A manifest (see ``manifests``) is what makes "complete" a checkable claim: a model is
``downloaded`` only when every manifest file is in place with the right size (``verify``
also checks hashes). ``Store`` is the one face the rest of the program sees; it composes the
cache layout (``cache_layout``: which path is which) and our manifest files, and itself owns
the judgement: which manifest describes the model in use, whether it is whole, and the
changes that keep the cache consistent (linking a snapshot, removing a revision, delete).

The cache may also be written by huggingface_hub itself (``hf download``, a
loader, ``hf cache prune``). ``refs/main`` is what every loader follows, so it is
the truth about which revision is in use: when our manifest names another commit,
or there is none, huggingface_hub's own record of the revision
(``trees/<commit>.json``, written by ``snapshot_download`` since hf 2.x) is read
instead, filtered to the files the model needs. Only caches without either fall
back to a list of the files a loader cannot do without.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelmgr.core.catalog import ModelSpec
from modelmgr.core.settings import Settings
from modelmgr.models.cache_layout import PARTIAL_SUFFIX, CacheLayout, Target, file_size
from modelmgr.models.manifests import FileEntry, Manifest, ManifestFiles, manifest_from_hf_tree, select_files
from modelmgr.models.transfer.record import bytes_present

__all__ = [
    "PARTIAL_SUFFIX",
    "FileEntry",
    "LocalState",
    "LocalStatus",
    "Manifest",
    "Store",
    "Target",
    "select_files",
]

LocalStatus = Literal["downloaded", "incomplete", "not_downloaded"]

# Files a loader cannot do without, for caches we did not write ourselves.
_REQUIRED = {
    "whisper": (("model.bin",), ("config.json",), ("tokenizer.json",), ("vocabulary.json", "vocabulary.txt")),
    "align": (("config.json",), ("vocab.json",), ("model.safetensors", "pytorch_model.bin")),
    "diarization": (("pytorch_model.bin",),),  # a pyannote model; a pipeline needs its config.yaml
}


def _required(spec: ModelSpec) -> tuple[tuple[str, ...], ...]:
    """The files without which a model found on disk (by another tool) is not whole."""
    return (("config.yaml",),) if spec.is_diarizer else _REQUIRED[spec.kind]


@dataclass(frozen=True)
class LocalState:
    status: LocalStatus
    bytes_present: int
    bytes_total: int | None
    path: Path | None


class Store:
    def __init__(self, settings: Settings) -> None:
        self.layout = CacheLayout(
            settings.hub_cache, settings.torch_checkpoints, settings.state_dir / "locks"
        )
        self._manifests = ManifestFiles(settings.state_dir / "manifests")

    # --- where things are (the layout's, kept here for callers) ---
    @property
    def hub_cache(self) -> Path:
        return self.layout.hub_cache

    @property
    def checkpoints(self) -> Path:
        return self.layout.checkpoints

    @property
    def locks(self) -> Path:
        return self.layout.locks

    @property
    def manifests(self) -> Path:
        """The folder of our manifests (assignable: tests point it at a full disk)."""
        return self._manifests.folder

    @manifests.setter
    def manifests(self, folder: Path) -> None:
        self._manifests.folder = folder

    def repo_dir(self, spec: ModelSpec) -> Path:
        return self.layout.repo_dir(spec)

    def targets(self, spec: ModelSpec, manifest: Manifest) -> list[Target]:
        return self.layout.targets(spec, manifest)

    def ref_commit(self, spec: ModelSpec) -> str | None:
        """The commit ``refs/<revision>`` points at: the one every HF loader uses."""
        return self.layout.ref_commit(spec)

    def free_bytes(self) -> int:
        """Free space on the disk that holds the cache (its nearest existing parent)."""
        return self.layout.free_bytes()

    def disk_total_bytes(self) -> int:
        return self.layout.disk_total_bytes()

    # --- manifests ---
    def save_manifest(self, spec: ModelSpec, manifest: Manifest) -> None:
        self._manifests.save(spec, manifest)

    def local_commit(self, spec: ModelSpec) -> str | None:
        """The revision on disk that loaders use (None: nothing, or not an HF repo)."""
        manifest = self.load_manifest(spec)
        return self.ref_commit(spec) or (manifest.commit if manifest else None)

    def load_manifest(self, spec: ModelSpec) -> Manifest | None:
        """What the model in use should consist of: ours when it names the revision loaders
        follow, else huggingface_hub's record of that revision, else None."""
        own = self._manifests.load(spec)
        ref = self.ref_commit(spec)
        if ref is None or (own is not None and own.commit == ref):
            return own
        hf = manifest_from_hf_tree(spec, ref, self.layout.tree_file(spec, ref))
        return hf or (own if own and self.layout.has_snapshot(spec, own.commit) else None)

    # --- state ---
    def local_state(self, spec: ModelSpec) -> LocalState:
        manifest = self.load_manifest(spec)
        if manifest is None:
            return self._state_without_manifest(spec)
        present = 0
        complete = True
        for target, placed in zip(
            self.targets(spec, manifest), self.layout.placed_files(spec, manifest), strict=True
        ):
            size = file_size(placed)
            if size == target.entry.size:
                present += size
                continue
            complete = False
            # The blob if whole; else what a partial's range record says is on disk (where a
            # resume starts: parallel parts leave holes), never the partial's length.
            present += bytes_present([target])
        path = self.model_path(spec, manifest)
        if complete:
            return LocalState("downloaded", present, manifest.total_bytes, path)
        started = present > 0 or self.repo_dir(spec).exists()
        return LocalState("incomplete" if started else "not_downloaded", present, manifest.total_bytes, None)

    def _state_without_manifest(self, spec: ModelSpec) -> LocalState:
        if spec.source == "torchaudio":
            file = self.layout.checkpoint(spec)
            size = file_size(file)
            if size:
                return LocalState("downloaded", size, size, file)
            return LocalState("not_downloaded", 0, None, None)
        snap = self.layout.snapshot_dir(spec, None)
        if (
            snap
            and snap.is_dir()
            and all(any((snap / n).is_file() for n in alts) for alts in _required(spec))
        ):
            size = sum(file_size(p) or 0 for p in snap.rglob("*") if p.is_file())
            return LocalState("downloaded", size, size, snap)
        status: LocalStatus = "incomplete" if self.repo_dir(spec).exists() else "not_downloaded"
        return LocalState(status, 0, None, None)

    def model_path(self, spec: ModelSpec, manifest: Manifest | None = None) -> Path | None:
        """What to hand a loader: the snapshot folder, or the checkpoint file."""
        if spec.source == "torchaudio":
            return self.layout.checkpoint(spec)
        manifest = manifest or self.load_manifest(spec)
        return self.layout.snapshot_dir(spec, manifest.commit if manifest else None)

    def verify(
        self,
        spec: ModelSpec,
        *,
        on_progress: Callable[[int], None] | None = None,
        remove_bad: bool = False,
    ) -> list[str]:
        """Re-hash every file of a model; returns the problems found (empty: whole).

        With ``remove_bad`` a file that fails is removed from the cache, so the model reads
        as incomplete and the next download fetches exactly those files.
        """
        manifest = self.load_manifest(spec)
        if manifest is None:
            return [f"{spec.id}: no manifest, nothing to verify against"]
        problems = []
        targets = self.targets(spec, manifest)
        for target, placed in zip(targets, self.layout.placed_files(spec, manifest), strict=True):
            entry = target.entry
            if file_size(placed) != entry.size:
                problems.append(f"{entry.path}: missing or wrong size")
                if remove_bad and file_size(target.final) not in (None, entry.size):
                    target.final.unlink(missing_ok=True)
                continue
            hasher = entry.hasher()
            if hasher is None:
                if on_progress:
                    on_progress(entry.size)
                continue
            with placed.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    hasher.update(block)
                    if on_progress:
                        on_progress(len(block))
            if hasher.hexdigest() != entry.expected_digest:
                problems.append(f"{entry.path}: checksum mismatch")
                if remove_bad:
                    (target.final if spec.source == "hf" else placed).unlink(missing_ok=True)
        return problems

    # --- changes ---
    def remove_revision(self, spec: ModelSpec, commit: str, *, keep: Manifest) -> int:
        """Remove ``snapshots/<commit>`` and the blobs only it used; returns the bytes freed."""
        if spec.source != "hf" or commit == keep.commit:
            return 0
        repo = self.repo_dir(spec)
        old = repo / "snapshots" / commit
        if not old.is_dir():
            return 0
        kept = {t.final.resolve() for t in self.targets(spec, keep)}
        for snap in (repo / "snapshots").iterdir():
            if snap != old:
                kept |= {p.resolve() for p in snap.rglob("*") if p.is_symlink()}
        freed = 0
        for link in old.rglob("*"):
            if link.is_symlink():
                blob = link.resolve()
                if blob not in kept and blob.is_file() and blob.parent == (repo / "blobs").resolve():
                    freed += file_size(blob) or 0
                    blob.unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)
        self.layout.tree_file(spec, commit).unlink(missing_ok=True)
        return freed

    def link_snapshot(self, spec: ModelSpec, manifest: Manifest, revision: str) -> Path | None:
        """Point ``snapshots/<commit>/<path>`` at the blobs and record the ref, as the HF cache does."""
        if spec.source == "torchaudio":
            return self.model_path(spec)
        assert manifest.commit is not None
        repo = self.repo_dir(spec)
        snap = repo / "snapshots" / manifest.commit
        for target in self.targets(spec, manifest):
            link = snap / target.entry.path
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.relpath(target.final, link.parent))
        ref = repo / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(manifest.commit)
        return snap

    def has_partials(self, spec: ModelSpec) -> bool:
        """True when a transfer of this model was interrupted with bytes on disk."""
        manifest = self._manifests.load(spec)  # the transfer's manifest, even mid-update
        return manifest is not None and any(file_size(t.partial) for t in self.targets(spec, manifest))

    def remove_partials(self, spec: ModelSpec) -> None:
        manifest = self._manifests.load(spec)
        if manifest is None:
            return
        for target in self.targets(spec, manifest):
            target.partial.unlink(missing_ok=True)
            target.partial.with_name(target.partial.name + ".ranges").unlink(missing_ok=True)  # transfer's

    def delete(self, spec: ModelSpec) -> int:
        """Remove a model's files and manifest; returns the bytes freed."""
        freed = 0
        if spec.source == "torchaudio":
            path = self.layout.checkpoint(spec)
            for p in (path, path.with_name(path.name + PARTIAL_SUFFIX)):
                freed += file_size(p) or 0
                p.unlink(missing_ok=True)
        else:
            repo = self.repo_dir(spec)
            if repo.exists():
                freed = sum(file_size(p) or 0 for p in repo.rglob("*") if p.is_file() and not p.is_symlink())
                shutil.rmtree(repo)
        self._manifests.remove(spec)
        return freed
