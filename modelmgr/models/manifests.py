"""What a model consists of: the manifest, and the files that hold ours.

A *manifest* (our own JSON, written before the first byte moves) records the commit and,
for every file, its size and hash. It is what makes "complete" a checkable claim. It lives
apart from the cache layout because it is our record, not huggingface_hub's: its folder is
in our state dir, and writing it is where a full disk is first met (so a failed write must
leave no half or empty file behind). huggingface_hub's own record of a revision
(``trees/<commit>.json``) is read into the same shape by ``manifest_from_hf_tree``.

**Integrity.** A file's digest is its LFS sha256 or its git blob id, from the hub's file list;
a mirror that lists sizes only has it taken from the file's ETag (``digest_from_etag``). A file
with neither is *size-only*: nothing can tell a same-size corrupt copy from a good one, and
``verify_verdict`` never calls such a file verified.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from modelmgr.core.catalog import ModelSpec
from modelmgr.core.errors import DiskFull

Integrity = Literal["digest", "mixed", "size-only"]  # what verify can check: see Manifest.integrity
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


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
        """The blob name huggingface_hub uses: sha256 for LFS files, else the git id.

        A size-only file's name holds its path too: two files of one size are two blobs."""
        if self.expected_digest:
            return self.expected_digest
        return f"size-{self.size}-{hashlib.sha256(self.path.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class Manifest:
    model_id: str
    repo_id: str
    commit: str | None
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def size_only(self) -> tuple[str, ...]:
        """The files with no digest: verify can compare only their sizes."""
        return tuple(f.path for f in self.files if f.expected_digest is None)

    @property
    def integrity(self) -> Integrity:
        """``digest``: every file has its sha256 or git blob id; ``size-only``: none has;
        ``mixed``: some files are size-only."""
        unhashed = len(self.size_only)
        if not unhashed:
            return "digest"
        return "size-only" if unhashed == len(self.files) else "mixed"

    @classmethod
    def from_json(cls, raw: dict) -> Manifest:
        files = tuple(FileEntry(**f) for f in raw["files"])
        return cls(raw["model_id"], raw["repo_id"], raw.get("commit"), files)


def digest_from_etag(etag: str | None) -> tuple[str | None, str | None]:
    """``(sha256, git_sha1)`` as a file's ETag names them (huggingface_hub's reading of it:
    ``X-Linked-Etag``, the LFS sha256, before ``ETag``, the git blob id, quotes and ``W/`` off).

    64 hex digits are a sha256, 40 a git blob id; anything else (a CDN's or a web server's
    own tag) is no digest at all.
    """
    if etag and _SHA256.fullmatch(etag):
        return etag, None
    if etag and _GIT_SHA1.fullmatch(etag):
        return None, etag
    return None, None


def verify_verdict(manifest: Manifest | None, problems: list[str]) -> tuple[str, str]:
    """What a verify that found ``problems`` may claim, as ``(result, message)``: ``corrupt``,
    ``verified`` (every file matched its digest), ``partly-verified`` (some files only by size)
    or ``size-only`` (sizes match, and there was no digest to check)."""
    if problems or manifest is None:
        return "corrupt", f"{len(problems)} problem(s): {'; '.join(problems)}"
    unhashed = manifest.size_only
    if not unhashed:
        return "verified", f"every file ({len(manifest.files)}) matches its digest"
    if len(unhashed) == len(manifest.files):
        return "size-only", "size-only: sizes match, no digest to check"
    hashed = len(manifest.files) - len(unhashed)
    return (
        "partly-verified",
        f"{hashed} file(s) match their digests; size-only: {', '.join(unhashed)} "
        "(sizes match, no digest to check)",
    )


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
