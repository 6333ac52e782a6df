"""Configuration, read once from the environment and passed in.

Nothing else in the project reads ``os.environ``: the app builds one ``Settings``
at start-up and hands it to every manager, so tests can run many differently
configured apps in one process. Hugging Face's own variables (``HF_ENDPOINT``,
``HF_HOME``, ``HF_HUB_CACHE``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``) are honoured
under their usual names; everything of ours uses the ``MODELMGR_`` prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _alias(ours: str, *theirs: str) -> AliasChoices:
    """Accept our prefixed name first, then the ecosystem's name(s)."""
    return AliasChoices(f"MODELMGR_{ours}", *theirs)


class CustomModel(BaseModel):
    """A CTranslate2 Whisper repo that is not in faster-whisper's table."""

    repo_id: str
    language: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELMGR_", extra="ignore")

    # --- server ---
    host: str = "127.0.0.1"
    port: int = 7860
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None  # a file holding the token (keeps it out of `ps` and the env)
    # Host names (besides loopback and --host) and origins allowed to talk to the studio;
    # comma-separated in the environment (MODELMGR_ALLOWED_HOSTS=studio.lan,gpu1.lan).
    allowed_hosts: Annotated[list[str], NoDecode] = []
    allowed_origins: Annotated[list[str], NoDecode] = []
    max_body_bytes: int = 1024 * 1024

    # --- where models come from and go to ---
    hf_endpoint: str = Field("https://huggingface.co", validation_alias=_alias("HF_ENDPOINT", "HF_ENDPOINT"))
    hf_home: Path = Field(
        Path.home() / ".cache" / "huggingface", validation_alias=_alias("HF_HOME", "HF_HOME")
    )
    hf_hub_cache: Path | None = Field(None, validation_alias=_alias("HF_HUB_CACHE", "HF_HUB_CACHE"))
    hf_token: SecretStr | None = Field(None, validation_alias=_alias("HF_TOKEN", "HF_TOKEN"))
    offline: bool = Field(False, validation_alias=_alias("OFFLINE", "HF_HUB_OFFLINE"))
    torch_home: Path = Field(
        Path.home() / ".cache" / "torch", validation_alias=_alias("TORCH_HOME", "TORCH_HOME")
    )
    torch_models_base_url: str = "https://download.pytorch.org/torchaudio/models"
    nltk_punkt_url: str = (
        "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/tokenizers/punkt_tab.zip"
    )
    # Transcription jobs (uploads and results). In distributed mode this is the folder every web
    # process and worker shares (MODELMGR_DATA_DIR); model caches stay per machine.
    data_dir: Path | None = None

    # --- catalog ---
    default_languages: list[str] = []
    custom_models: dict[str, CustomModel] = {}

    # --- downloads ---
    max_whisper_downloads: int = Field(1, ge=1)
    max_align_downloads: int = Field(1, ge=1)
    download_retries: int = Field(4, ge=0)
    download_timeout_s: float = 30.0  # connect and read deadline of every network call
    stall_s: float = Field(30.0, gt=0)  # a transfer that moves no byte this long is failed and retried
    download_connections: int = Field(8, ge=1)  # parallel ranged requests per download
    download_part_bytes: int = Field(16 * 1024 * 1024, ge=64 * 1024)  # files above this go in parts
    min_free_bytes: int = 256 * 1024 * 1024
    resume_on_start: bool = True  # restart downloads a crash or shutdown interrupted
    # Ask the hub whether downloaded models have a newer commit, this often (0: never); never offline.
    update_check_interval_s: float = Field(24 * 3600.0, ge=0)

    # --- transcription ---
    max_upload_bytes: int = Field(1024**3, ge=1)  # audio uploads; larger ones get 413 while streaming
    transcription_retention_s: float = Field(
        7 * 24 * 3600.0, gt=0
    )  # finished jobs and results kept this long
    default_model: str = "small"  # what the OpenAI API's "whisper-1" means here
    batch_size: int | None = Field(None, ge=1)  # None: 16 on CUDA, the measured best on CPU (see README)

    # --- distributed mode (only with a Redis URL; the embedded default never imports Celery) ---
    redis_url: str | None = None  # MODELMGR_REDIS_URL: jobs go to Celery workers through Redis
    visibility_timeout_s: float = Field(
        6 * 3600.0, gt=0
    )  # > the longest job: then an unacked job is re-queued
    restore_interval_s: float = Field(10.0, gt=0)  # how often workers look for unacked jobs to re-queue
    worker_heartbeat_s: float = Field(2.0, gt=0)  # a worker missing 3 heartbeats counts as gone
    redis_timeout_s: float = Field(3.0, gt=0)  # connect/read deadline of every Redis call of ours

    # --- events ---
    progress_interval_s: float = 0.1
    heartbeat_s: float = 15.0
    event_replay: int = 2048
    subscriber_queue: int = 256

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def hub_cache(self) -> Path:
        """The HF hub cache, laid out as huggingface_hub lays it out."""
        return self.hf_hub_cache or self.hf_home / "hub"

    @property
    def state_dir(self) -> Path:
        """Our own files about this cache (manifests, locks, nltk data) live beside the HF cache."""
        return self.hf_home / "modelmgr"

    @property
    def torch_checkpoints(self) -> Path:
        """Where ``torch.hub.load_state_dict_from_url`` caches torchaudio weights."""
        return self.torch_home / "hub" / "checkpoints"

    @property
    def jobs_dir(self) -> Path:
        """Transcription jobs: one folder each (job.json, the upload while in flight, results)."""
        return (self.data_dir or self.state_dir) / "transcriptions"

    @property
    def nltk_dir(self) -> Path:
        return self.state_dir / "nltk_data"
