"""What is on disk: the HF cache inventory, manifests, completeness, delete.

Files live in huggingface_hub's cache layout (``models--org--name/blobs``,
``snapshots/<commit>/...`` symlinks, ``refs/<revision>``) so every other HF tool
finds them, and torchaudio bundles live where ``torch.hub`` caches them.

A *manifest* (our own JSON, written before the first byte moves) records the
commit and, for every file, its size and hash. It is what makes "complete" a
checkable claim: a model is ``downloaded`` only when every manifest file is in
place with the right size (``verify`` also checks hashes).

The cache may also be written by huggingface_hub itself (``hf download``, a
loader, ``hf cache prune``). ``refs/main`` is what every loader follows, so it is
the truth about which revision is in use: when our manifest names another commit,
or there is none, huggingface_hub's own record of the revision
(``trees/<commit>.json``, written by ``snapshot_download`` since hf 2.x) is read
instead, filtered to the files the model needs. Only caches without either fall
back to a list of the files a loader cannot do without.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from modelmgr.core.catalog import ModelSpec
from modelmgr.core.errors import DiskFull
from modelmgr.core.settings import Settings

LocalStatus = Literal["downloaded", "incomplete", "not_downloaded"]
PARTIAL_SUFFIX = ".incomplete"  # huggingface_hub's own suffix for blobs in flight

# Files a loader cannot do without, for caches we did not write ourselves.
_REQUIRED = {
    "whisper": (("model.bin",), ("config.json",), ("tokenizer.json",), ("vocabulary.json", "vocabulary.txt")),
    "align": (("config.json",), ("vocab.json",), ("model.safetensors", "pytorch_model.bin")),
}


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative path inside the repo (or the checkpoint file name)
    size: int
    url: str
    sha256: str | None = None  # LFS files: the content hash
    git_sha1: str | None = None  # regular files: the git blob id

    def hasher(self):
        """A hash object that ends equal to this file's id when fed its bytes (None: no id known)."""
        if self.sha256:
            return hashlib.sha256()
        if self.git_sha1:
            h = hashlib.sha1()
            h.update(b"blob %d\0" % self.size)  # git hashes a header, then the content
            return h
        return None

    @property
    def expected_digest(self) -> str | None:
        return self.sha256 or self.git_sha1

    @property
    def etag(self) -> str:
        """The blob name huggingface_hub uses: sha256 for LFS files, else the git id."""
        return self.sha256 or self.git_sha1 or f"size-{self.size}"


@dataclass(frozen=True)
class Manifest:
    model_id: str
    repo_id: str
    commit: str | None
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def from_json(cls, raw: dict) -> Manifest:
        files = tuple(FileEntry(**f) for f in raw["files"])
        return cls(raw["model_id"], raw["repo_id"], raw.get("commit"), files)


@dataclass(frozen=True)
class Target:
    """Where one file of a manifest is written: partial first, then the final blob."""

    entry: FileEntry
    final: Path
    partial: Path
    lock: Path  # a cross-process file lock: one writer per partial, even across processes


@dataclass(frozen=True)
class LocalState:
    status: LocalStatus
    bytes_present: int
    bytes_total: int | None
    path: Path | None


def select_files(spec: ModelSpec, paths: list[str]) -> list[str]:
    """The repo files a model needs: its patterns, and one weights format only."""
    chosen = [p for p in paths if any(fnmatch.fnmatch(p, pat) for pat in spec.patterns)]
    if "model.safetensors" in chosen and "pytorch_model.bin" in chosen:
        chosen.remove("pytorch_model.bin")  # transformers prefers safetensors
    return chosen


class Store:
    def __init__(self, settings: Settings) -> None:
        self.hub_cache = settings.hub_cache
        self.checkpoints = settings.torch_checkpoints
        self.manifests = settings.state_dir / "manifests"
        self.locks = settings.state_dir / "locks"

    # --- layout ---
    def repo_dir(self, spec: ModelSpec) -> Path:
        return self.hub_cache / ("models--" + spec.repo_id.replace("/", "--"))

    def _manifest_file(self, spec: ModelSpec) -> Path:
        return self.manifests / (spec.repo_id.replace("/", "--") + ".json")

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

    def _snapshot_dir(self, spec: ModelSpec, commit: str | None) -> Path | None:
        if commit is None:
            ref = self.repo_dir(spec) / "refs" / spec.revision
            if not ref.is_file():
                return None
            commit = ref.read_text().strip()
        return self.repo_dir(spec) / "snapshots" / commit

    # --- manifests ---
    def save_manifest(self, spec: ModelSpec, manifest: Manifest) -> None:
        path = self._manifest_file(spec)
        tmp = path.with_suffix(".tmp")
        try:
            self.manifests.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(asdict(manifest), indent=1))
            os.replace(tmp, path)  # atomic: a crash never leaves half a manifest
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # a full disk leaves no 0-byte manifest behind
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull("the disk is full: free some space, then download again") from None
            raise

    def _own_manifest(self, spec: ModelSpec) -> Manifest | None:
        try:
            return Manifest.from_json(json.loads(self._manifest_file(spec).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def ref_commit(self, spec: ModelSpec) -> str | None:
        """The commit ``refs/<revision>`` points at: the one every HF loader uses."""
        if spec.source != "hf":
            return None
        try:
            return (self.repo_dir(spec) / "refs" / spec.revision).read_text().strip() or None
        except OSError:
            return None

    def local_commit(self, spec: ModelSpec) -> str | None:
        """The revision on disk that loaders use (None: nothing, or not an HF repo)."""
        manifest = self.load_manifest(spec)
        return self.ref_commit(spec) or (manifest.commit if manifest else None)

    def load_manifest(self, spec: ModelSpec) -> Manifest | None:
        """What the model in use should consist of: ours when it names the revision loaders
        follow, else huggingface_hub's record of that revision, else None."""
        own = self._own_manifest(spec)
        ref = self.ref_commit(spec)
        if ref is None or (own is not None and own.commit == ref):
            return own
        return self._hf_manifest(spec, ref) or (own if own and self._has_snapshot(spec, own.commit) else None)

    def _has_snapshot(self, spec: ModelSpec, commit: str | None) -> bool:
        return commit is not None and (self.repo_dir(spec) / "snapshots" / commit).is_dir()

    def _hf_manifest(self, spec: ModelSpec, commit: str) -> Manifest | None:
        """huggingface_hub's tree listing of ``commit`` (``trees/<commit>.json``) as a manifest."""
        try:
            raw = json.loads((self.repo_dir(spec) / "trees" / f"{commit}.json").read_text())
            listing = {path: info for path, info in raw["files"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        files = []
        for path in select_files(spec, sorted(listing)):
            info = listing[path]
            sha256 = info.get("lfs_sha256")
            files.append(
                FileEntry(
                    path,
                    int(info["size"]),
                    "",
                    sha256=sha256,
                    git_sha1=None if sha256 else info.get("blob_id"),
                )
            )
        return Manifest(spec.id, spec.repo_id, commit, tuple(files)) if files else None

    # --- state ---
    def local_state(self, spec: ModelSpec) -> LocalState:
        manifest = self.load_manifest(spec)
        if manifest is None:
            return self._state_without_manifest(spec)
        present = 0
        complete = True
        for target, placed in zip(
            self.targets(spec, manifest), self._placed_files(spec, manifest), strict=True
        ):
            size = _size(placed)
            if size == target.entry.size:
                present += size
                continue
            complete = False
            blob = _size(target.final)
            present += blob if blob == target.entry.size else (_size(target.partial) or 0)
        path = self.model_path(spec, manifest)
        if complete:
            return LocalState("downloaded", present, manifest.total_bytes, path)
        started = present > 0 or self.repo_dir(spec).exists()
        return LocalState("incomplete" if started else "not_downloaded", present, manifest.total_bytes, None)

    def _placed_files(self, spec: ModelSpec, manifest: Manifest) -> list[Path]:
        """Where a loader looks for each file (the snapshot link, or the checkpoint)."""
        if spec.source == "torchaudio":
            return [self.checkpoints / f.path for f in manifest.files]
        snap = self._snapshot_dir(spec, manifest.commit)
        return [snap / f.path if snap else Path("/nonexistent") for f in manifest.files]

    def _state_without_manifest(self, spec: ModelSpec) -> LocalState:
        if spec.source == "torchaudio":
            file = self.checkpoints / (spec.filename or "")
            size = _size(file)
            if size:
                return LocalState("downloaded", size, size, file)
            return LocalState("not_downloaded", 0, None, None)
        snap = self._snapshot_dir(spec, None)
        if (
            snap
            and snap.is_dir()
            and all(any((snap / n).is_file() for n in alts) for alts in _REQUIRED[spec.kind])
        ):
            size = sum(_size(p) or 0 for p in snap.rglob("*") if p.is_file())
            return LocalState("downloaded", size, size, snap)
        status: LocalStatus = "incomplete" if self.repo_dir(spec).exists() else "not_downloaded"
        return LocalState(status, 0, None, None)

    def model_path(self, spec: ModelSpec, manifest: Manifest | None = None) -> Path | None:
        """What to hand a loader: the snapshot folder, or the checkpoint file."""
        if spec.source == "torchaudio":
            return self.checkpoints / (spec.filename or "")
        manifest = manifest or self.load_manifest(spec)
        return self._snapshot_dir(spec, manifest.commit if manifest else None)

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
        for target, placed in zip(targets, self._placed_files(spec, manifest), strict=True):
            entry = target.entry
            if _size(placed) != entry.size:
                problems.append(f"{entry.path}: missing or wrong size")
                if remove_bad and _size(target.final) not in (None, entry.size):
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
                    freed += _size(blob) or 0
                    blob.unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)
        (repo / "trees" / f"{commit}.json").unlink(missing_ok=True)
        return freed

    # --- changes ---
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
        manifest = self._own_manifest(spec)  # the transfer's manifest, even mid-update
        return manifest is not None and any(_size(t.partial) for t in self.targets(spec, manifest))

    def remove_partials(self, spec: ModelSpec) -> None:
        manifest = self._own_manifest(spec)
        if manifest is None:
            return
        for target in self.targets(spec, manifest):
            target.partial.unlink(missing_ok=True)
            target.partial.with_name(target.partial.name + ".ranges").unlink(missing_ok=True)  # transfer's

    def delete(self, spec: ModelSpec) -> int:
        """Remove a model's files and manifest; returns the bytes freed."""
        freed = 0
        if spec.source == "torchaudio":
            path = self.checkpoints / (spec.filename or "")
            for p in (path, path.with_name(path.name + PARTIAL_SUFFIX)):
                freed += _size(p) or 0
                p.unlink(missing_ok=True)
        else:
            repo = self.repo_dir(spec)
            if repo.exists():
                freed = sum(_size(p) or 0 for p in repo.rglob("*") if p.is_file() and not p.is_symlink())
                shutil.rmtree(repo)
        self._manifest_file(spec).unlink(missing_ok=True)
        return freed

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


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
