"""What a model consists of: the manifest, and the files that hold ours.

A *manifest* (our own JSON, written before the first byte moves) records the commit and,
for every file, its size and hash. It is what makes "complete" a checkable claim. It lives
apart from the cache layout because it is our record, not huggingface_hub's: its folder is
in our state dir, and writing it is where a full disk is first met (so a failed write must
leave no half or empty file behind). huggingface_hub's own record of a revision
(``trees/<commit>.json``) is read into the same shape by ``manifest_from_hf_tree``.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from modelmgr.core.catalog import ModelSpec
from modelmgr.core.errors import DiskFull


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


def select_files(spec: ModelSpec, paths: list[str]) -> list[str]:
    """The repo files a model needs: its patterns, and one weights format only."""
    chosen = [p for p in paths if any(fnmatch.fnmatch(p, pat) for pat in spec.patterns)]
    if "model.safetensors" in chosen and "pytorch_model.bin" in chosen:
        chosen.remove("pytorch_model.bin")  # transformers prefers safetensors
    return chosen


def manifest_from_hf_tree(spec: ModelSpec, commit: str, tree: Path) -> Manifest | None:
    """huggingface_hub's tree listing of ``commit`` (``trees/<commit>.json``) as a manifest."""
    try:
        raw = json.loads(tree.read_text())
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


class ManifestFiles:
    """Our manifests, one JSON file per repo in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, spec: ModelSpec) -> Path:
        return self.folder / (spec.repo_id.replace("/", "--") + ".json")

    def save(self, spec: ModelSpec, manifest: Manifest) -> None:
        path = self.path(spec)
        tmp = path.with_suffix(".tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(asdict(manifest), indent=1))
            os.replace(tmp, path)  # atomic: a crash never leaves half a manifest
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # a full disk leaves no 0-byte manifest behind
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull("the disk is full: free some space, then download again") from None
            raise

    def load(self, spec: ModelSpec) -> Manifest | None:
        """Our manifest of the repo (None: none, or unreadable)."""
        try:
            return Manifest.from_json(json.loads(self.path(spec).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove(self, spec: ModelSpec) -> None:
        self.path(spec).unlink(missing_ok=True)
