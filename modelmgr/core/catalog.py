"""What models exist, which alignment model a Whisper model needs, and what a diarizer is made of.

The tables are faster-whisper's and whisperx's own. Importing those packages
pulls in torch, CTranslate2 and PyAV (tens of seconds), which would make start-up
slow, so the tables are read from their source files with ``ast.literal_eval``
instead: the same data, without executing the packages.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from modelmgr.core.errors import InvalidInput, ModelNotFound, UnknownLanguage
from modelmgr.core.settings import Settings

Kind = Literal["whisper", "align", "diarization"]
Source = Literal["hf", "torchaudio"]

# faster_whisper.utils.download_model fetches exactly these from a CTranslate2 repo.
WHISPER_PATTERNS = (
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
)
# What transformers needs to load a Wav2Vec2ForCTC + processor; weights are chosen in store.py.
ALIGN_PATTERNS = (
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",  # newer transformers save the processor here; `hf cache verify` expects it
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "added_tokens.json",
    "model.safetensors",
    "pytorch_model.bin",
)
# pyannote: a pipeline repo is its config.yaml; each model it names is a checkpoint (plus the
# config.yaml pyannote's own loader fetches beside it, which `hf cache verify` then finds).
DIARIZATION_PIPELINE_PATTERNS = ("config.yaml",)
DIARIZATION_MODEL_PATTERNS = ("pytorch_model.bin", "config.yaml")
# whisperx's default diarizer (whisperx.diarize.DiarizationPipeline) and the models its
# config.yaml names. Gated on the Hub: the pipeline and the segmentation model ask each user to
# accept their conditions (and send a token); the embedding model is open. The parts listed
# here are what the Models tab shows before anything is downloaded; at load time the
# downloaded config.yaml is what counts (asr/diarize.py resolves the ids it names).
DIARIZATION_PIPELINES: dict[str, tuple[str, ...]] = {
    "pyannote/speaker-diarization-3.1": (
        "pyannote/segmentation-3.0",
        "pyannote/wespeaker-voxceleb-resnet34-LM",
    ),
}
GATED_REPOS = frozenset({"pyannote/speaker-diarization-3.1", "pyannote/segmentation-3.0"})
DEFAULT_DIARIZER = "pyannote/speaker-diarization-3.1"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
# Hub repos for the languages whisperx aligns with torchaudio bundles, which come from
# download.pytorch.org: behind a Hub mirror (HF_ENDPOINT) that host is often unreachable.
# English is the same fairseq checkpoint (wav2vec2 base, LibriSpeech 960 h) converted to
# transformers; fr/de/es/it are the xlsr-53 CTC models whisperx users pass as --align_model.
HUB_ALIGNERS_FOR_TORCHAUDIO = {
    "en": "facebook/wav2vec2-base-960h",
    "fr": "jonatasgrosman/wav2vec2-large-xlsr-53-french",
    "de": "jonatasgrosman/wav2vec2-large-xlsr-53-german",
    "es": "jonatasgrosman/wav2vec2-large-xlsr-53-spanish",
    "it": "jonatasgrosman/wav2vec2-large-xlsr-53-italian",
}
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_TORCH_MODELS_URL = "https://download.pytorch.org/torchaudio/models"


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable model. ``id`` is what the API and UI use."""

    id: str
    repo_id: str
    kind: Kind
    language: str | None = None
    source: Source = "hf"
    filename: str | None = None  # torchaudio bundles: the checkpoint file name
    patterns: tuple[str, ...] = field(default=())
    revision: str = "main"
    # diarization pipelines: the catalog ids of the models it runs (downloaded with it)
    parts: tuple[str, ...] = field(default=())
    # the Hub asks for a token and accepted conditions (known up front, so a download without
    # a token is refused from the request instead of failing in the background)
    gated: bool = False

    @property
    def is_diarizer(self) -> bool:
        """A diarization pipeline (not one of the models inside it)."""
        return self.kind == "diarization" and bool(self.parts)


def _package_file(package: str, relative: str) -> Path:
    """Locate a file inside an installed package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _module_literals(path: Path) -> dict[str, object]:
    """Top-level ``NAME = <literal>`` assignments of a module, evaluated safely."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def _torchaudio_checkpoints(path: Path) -> dict[str, str]:
    """Bundle name -> checkpoint file, from ``NAME = Wav2Vec2ASRBundle("file.pth", ...)``."""
    found: dict[str, str] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        target = node.targets[0]
        call = node.value
        args = [a for a in call.args if isinstance(a, ast.Constant)]
        args += [k.value for k in call.keywords if k.arg == "_path" and isinstance(k.value, ast.Constant)]
        if isinstance(target, ast.Name) and args and isinstance(args[0].value, str):
            found[target.id] = args[0].value
    return found


@cache
def upstream_tables() -> dict[str, object]:
    """faster-whisper's model table and languages, whisperx's alignment tables."""
    fw_utils = _module_literals(_package_file("faster_whisper", "utils.py"))
    fw_tok = _module_literals(_package_file("faster_whisper", "tokenizer.py"))
    wx = _module_literals(_package_file("whisperx", "alignment.py"))
    ta = _torchaudio_checkpoints(_package_file("torchaudio", "pipelines/_wav2vec2/impl.py"))
    return {
        "whisper": dict(fw_utils["_MODELS"]),
        "languages": tuple(fw_tok["_LANGUAGE_CODES"]),
        "align_torch": dict(wx["DEFAULT_ALIGN_MODELS_TORCH"]),
        "align_hf": dict(wx["DEFAULT_ALIGN_MODELS_HF"]),
        "torch_files": ta,
    }


def validate_model_id(model_id: str) -> str:
    """Reject ids that could escape the cache or confuse routing, before any lookup."""
    if (
        not model_id
        or len(model_id) > 200
        or ".." in model_id
        or model_id.startswith(("/", "."))
        or "\\" in model_id
        or "//" in model_id
        or any(ord(c) < 32 or c in '<>:"|?*%' for c in model_id)
    ):
        raise InvalidInput(f"{model_id!r} is not a valid model id")
    return model_id


def _align_source(settings: Settings) -> str:
    """Where alignment models of torchaudio languages come from first: "torchaudio" or "hub"."""
    if settings.align_source != "auto":
        return settings.align_source
    mirror = settings.hf_endpoint.rstrip("/") != DEFAULT_HF_ENDPOINT
    torch_mirror = settings.torch_models_base_url.rstrip("/") != DEFAULT_TORCH_MODELS_URL
    return "hub" if mirror and not torch_mirror else "torchaudio"


class Catalog:
    """Read-only view of every known model; built once per app."""

    def __init__(self, settings: Settings) -> None:
        tables = upstream_tables()
        self.languages: tuple[str, ...] = tables["languages"]  # type: ignore[assignment]
        self._models: dict[str, ModelSpec] = {}
        # language -> alignment model ids, best first (see align_candidates)
        self._align_by_language: dict[str, list[str]] = {}
        self._align_source = _align_source(settings)
        self.default_diarizer: str = settings.diarize_model
        for name, repo in tables["whisper"].items():  # type: ignore[union-attr]
            language = "en" if name.endswith(".en") else None
            self._add(ModelSpec(name, repo, "whisper", language, patterns=WHISPER_PATTERNS))
        for name, custom in settings.custom_models.items():
            validate_model_id(name)
            if not _REPO_ID.match(custom.repo_id):
                raise InvalidInput(f"custom model {name!r}: {custom.repo_id!r} is not a repo id")
            if custom.language is not None:
                self.check_language(custom.language)
            self._add(ModelSpec(name, custom.repo_id, "whisper", custom.language, patterns=WHISPER_PATTERNS))
        torch_files: dict[str, str] = tables["torch_files"]  # type: ignore[assignment]
        for language, bundle in tables["align_torch"].items():  # type: ignore[union-attr]
            self._add(
                ModelSpec(
                    bundle,
                    bundle,
                    "align",
                    language,
                    source="torchaudio",
                    filename=torch_files[bundle],
                )
            )
            hub_twin = HUB_ALIGNERS_FOR_TORCHAUDIO.get(language)
            choices = [bundle] if hub_twin is None else [bundle, hub_twin]
            if self._align_source == "hub":
                choices.reverse()
            self._align_by_language[language] = choices
        hub_aligners = {**HUB_ALIGNERS_FOR_TORCHAUDIO, **tables["align_hf"]}  # type: ignore[dict-item]
        for language, repo in hub_aligners.items():
            # whisperx prefers the torchaudio bundle when a language has both.
            self._align_by_language.setdefault(language, [repo])
            if repo not in self._models:
                self._add(ModelSpec(repo, repo, "align", language, patterns=ALIGN_PATTERNS))

        for pipeline, parts in DIARIZATION_PIPELINES.items():
            self._add(
                ModelSpec(
                    pipeline,
                    pipeline,
                    "diarization",
                    patterns=DIARIZATION_PIPELINE_PATTERNS,
                    parts=parts,
                    gated=pipeline in GATED_REPOS,
                )
            )
            for part in parts:
                if part not in self._models:
                    self._add(
                        ModelSpec(
                            part,
                            part,
                            "diarization",
                            patterns=DIARIZATION_MODEL_PATTERNS,
                            gated=part in GATED_REPOS,
                        )
                    )

    def _add(self, spec: ModelSpec) -> None:
        self._models[spec.id] = spec

    def all(self) -> list[ModelSpec]:
        return list(self._models.values())

    def twins(self, spec: ModelSpec) -> list[ModelSpec]:
        """Every catalog entry that fetches the same repository (``large``/``large-v3``), itself included."""
        return [s for s in self._models.values() if s.repo_id == spec.repo_id] or [spec]

    def get(self, model_id: str) -> ModelSpec:
        validate_model_id(model_id)
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelNotFound(f"no model called {model_id!r} in the catalog") from None

    def diarizer(self, model_id: str) -> ModelSpec:
        """The diarization pipeline called ``model_id`` (InvalidInput if that model cannot diarize)."""
        spec = self.get(model_id)
        if not spec.is_diarizer:
            raise InvalidInput(
                f"{model_id} is a {spec.kind} model, not a diarization pipeline; "
                f"diarize with {', '.join(DIARIZATION_PIPELINES)}"
            )
        return spec

    def part_for_repo(self, repo_id: str) -> ModelSpec | None:
        """The diarization model a pipeline's config.yaml names by repo id (``@revision`` dropped)."""
        repo = repo_id.split("@", 1)[0]
        return next((s for s in self._models.values() if s.kind == "diarization" and s.repo_id == repo), None)

    def check_language(self, language: str) -> str:
        if language not in self.languages:
            raise UnknownLanguage(f"{language!r} is not a language Whisper knows")
        return language

    def check_model_language(self, spec: ModelSpec, language: str) -> str:
        """A language-specific model (``*.en``) transcribes its own language only."""
        self.check_language(language)
        if spec.kind == "whisper" and spec.language and language != spec.language:
            raise UnknownLanguage(f"{spec.id} only transcribes {spec.language!r}, not {language!r}")
        return language

    def align_for(self, language: str) -> ModelSpec | None:
        """The alignment model to fetch first for ``language`` (None: whisperx has none)."""
        candidates = self.align_candidates(language)
        return candidates[0] if candidates else None

    def align_candidates(self, language: str) -> list[ModelSpec]:
        """Every alignment model that can align ``language``, best first.

        For en/fr/de/es/it: whisperx's torchaudio bundle, then a Hub repo of the same
        kind; the Hub repo first when ``align_source`` says so (``auto``: when HF_ENDPOINT
        names a mirror and no mirror of download.pytorch.org is configured).
        """
        self.check_language(language)
        return [self._models[model_id] for model_id in self._align_by_language.get(language, ())]

    def bundle_languages(
        self, spec: ModelSpec, requested: list[str] | None, defaults: list[str]
    ) -> list[str]:
        """Languages whose alignment models come with a Whisper download.

        The request wins, then the model's own language (``*.en``), then the
        configured defaults.
        """
        if spec.kind != "whisper":
            return []
        if requested:
            return [self.check_model_language(spec, lang) for lang in dict.fromkeys(requested)]
        if spec.language:
            return [spec.language]
        return [self.check_language(lang) for lang in defaults]

    def align_models_for(self, spec: ModelSpec, languages: list[str]) -> list[ModelSpec]:
        found = [self.align_for(lang) for lang in languages]
        return list({a.id: a for a in found if a is not None}.values())
