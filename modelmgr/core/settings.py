"""Configuration, read once from the environment and passed in.

Nothing else in the project reads ``os.environ``: the app builds one ``Settings``
at start-up and hands it to every manager, so tests can run many differently
configured apps in one process. Hugging Face's own variables (``HF_ENDPOINT``,
``HF_HOME``, ``HF_HUB_CACHE``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``) are honoured
under their usual names; everything of ours uses the ``MODELMGR_`` prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

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
    # populate_by_name: Settings(offline=True) in code means what it says (not only MODELMGR_OFFLINE)
    model_config = SettingsConfigDict(env_prefix="MODELMGR_", extra="ignore", populate_by_name=True)

    # --- server ---
    host: str = "127.0.0.1"  # interface to listen on (0.0.0.0: every interface; then set a token)
    port: int = 7860  # port to listen on
    # Required on every route but /api/health: `Authorization: Bearer T`, `X-Auth-Token`, `?token=`
    # (browsers then get a session cookie); generated when exposed beyond loopback without one.
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None  # a file holding the token (keeps it out of `ps` and the env)
    # Host names (besides loopback and --host) and origins allowed to talk to the studio;
    # comma-separated in the environment (MODELMGR_ALLOWED_HOSTS=studio.lan,gpu1.lan).
    allowed_hosts: Annotated[list[str], NoDecode] = []  # extra Host names to serve (behind a proxy: its name)
    allowed_origins: Annotated[list[str], NoDecode] = []  # origins allowed to send state-changing requests
    max_body_bytes: int = 1024 * 1024  # larger JSON bodies on the API get 413
    # The public path prefix behind a proxy (e.g. "/studio"); requests with or without it are served.
    root_path: str = Field("", pattern=r"^(/[A-Za-z0-9._~\-]+)*$")
    # Proxies whose X-Forwarded-Proto/-For uvicorn trusts (comma-separated IPs or "*").
    forwarded_allow_ips: str = "127.0.0.1,::1"

    # --- where models come from and go to ---
    # Hub or mirror to download from (e.g. https://hf-mirror.com).
    hf_endpoint: str = Field("https://huggingface.co", validation_alias=_alias("HF_ENDPOINT", "HF_ENDPOINT"))
    # Model cache root, huggingface_hub's own layout.
    hf_home: Path = Field(
        Path.home() / ".cache" / "huggingface", validation_alias=_alias("HF_HOME", "HF_HOME")
    )
    # The hub cache itself (default: $HF_HOME/hub).
    hf_hub_cache: Path | None = Field(None, validation_alias=_alias("HF_HUB_CACHE", "HF_HUB_CACHE"))
    # Token for gated or private repos (sent only to the hub endpoint); unset: huggingface_hub's
    # token file ($HF_HOME/token or HF_TOKEN_PATH, written by `hf auth login`). The older name
    # HUGGING_FACE_HUB_TOKEN counts too, as huggingface_hub still reads it.
    hf_token: SecretStr | None = Field(
        None, validation_alias=_alias("HF_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    )
    # Never reach out: missing models report an `offline` error.
    offline: bool = Field(False, validation_alias=_alias("OFFLINE", "HF_HUB_OFFLINE"))
    # torchaudio alignment bundles (en, fr, de, es, it) land in hub/checkpoints here.
    torch_home: Path = Field(
        Path.home() / ".cache" / "torch", validation_alias=_alias("TORCH_HOME", "TORCH_HOME")
    )
    torch_models_base_url: str = "https://download.pytorch.org/torchaudio/models"  # mirror for those bundles
    # Where en/fr/de/es/it aligners come from first: torchaudio's bundle or a Hub repo of the same
    # kind (the other one is the fallback). auto: the Hub when HF_ENDPOINT is a mirror and the
    # torch URL above is not. Without any aligner, word times come from Whisper itself.
    align_source: Literal["auto", "torchaudio", "hub"] = "auto"
    # The speaker diarization pipeline jobs use when they ask for `diarize` (gated on the Hub:
    # accept its conditions and those of pyannote/segmentation-3.0, then set HF_TOKEN).
    diarize_model: str = "pyannote/speaker-diarization-3.1"
    # nltk's punkt_tab (whisperx.align needs it), fetched with the alignment models.
    nltk_punkt_url: str = (
        "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/tokenizers/punkt_tab.zip"
    )
    # transcription jobs: uploads and results (default $HF_HOME/modelmgr); in distributed mode
    # the folder every web process and worker shares
    data_dir: Path | None = None

    # --- catalog ---
    # JSON list: alignment models bundled with multilingual Whisper downloads when a request names none.
    default_languages: list[str] = []
    # JSON: {"my-model": {"repo_id": "org/faster-whisper-x", "language": "zh"}}.
    custom_models: dict[str, CustomModel] = {}

    # --- downloads ---
    max_whisper_downloads: int = Field(1, ge=1)  # concurrent Whisper downloads; the rest wait as queued
    max_align_downloads: int = Field(1, ge=1)  # concurrent alignment downloads; the rest wait as queued
    download_retries: int = Field(4, ge=0)  # retries (Range resume, backoff) on network errors and 5xx
    download_timeout_s: float = 30.0  # connect and read deadline of every network call
    stall_s: float = Field(30.0, gt=0)  # a transfer that moves no byte this long is failed and retried
    download_connections: int = Field(8, ge=1)  # parallel ranged requests per download
    download_part_bytes: int = Field(16 * 1024 * 1024, ge=64 * 1024)  # files above this go in parts
    min_free_bytes: int = 256 * 1024 * 1024  # a download that would leave less free fails up front (507)
    resume_on_start: bool = True  # restart downloads a crash or shutdown interrupted
    # Ask the hub whether downloaded models have a newer commit this often (0: never; never offline).
    update_check_interval_s: float = Field(24 * 3600.0, ge=0)
    fetch_sizes: bool = True  # ask the hub for model sizes in the background (never when offline)
    sizes_refresh_s: float = Field(24 * 3600, gt=0)  # ask the hub for model sizes at most this often
    sizes_retry_s: float = Field(600, gt=0)  # after a failed attempt (no network), try again this late

    # --- command line ---
    url: str | None = None  # the CLI drives this running server instead of in-process managers

    # --- transcription ---
    max_upload_bytes: int = Field(1024**3, ge=1)  # audio uploads; larger ones get 413 while streaming
    transcription_retention_s: float = Field(
        7 * 24 * 3600.0, gt=0
    )  # finished jobs and results kept this long
    default_model: str = "small"  # what the OpenAI API's "whisper-1" means here
    batch_size: int | None = Field(
        None, ge=1
    )  # jobs that name none; None: 16 on CUDA, 8 on CPU (measured, see README)

    # --- distributed mode (only with a Redis URL; the embedded default never imports Celery) ---
    # distributed mode (also --redis-url): jobs go to Celery workers through this Redis
    redis_url: str | None = None
    # the broker's safety net, longer than the longest job: an unacknowledged job is handed out
    # again after this (web processes re-queue a dead worker's job after 5 missed heartbeats)
    visibility_timeout_s: float = Field(6 * 3600.0, gt=0)
    restore_interval_s: float = Field(10.0, gt=0)  # how often workers look for such jobs
    worker_heartbeat_s: float = Field(2.0, gt=0)  # silent for 3 beats: gone; 5: its job is re-queued
    redis_timeout_s: float = Field(3.0, gt=0)  # connect/read deadline of every Redis call of ours

    # --- events ---
    progress_interval_s: float = 0.1  # at most this often a progress event per model or job
    heartbeat_s: float = 15.0  # SSE heartbeat (`ping` event)
    event_replay: int = 2048  # events kept for clients that reconnect with Last-Event-ID
    subscriber_queue: int = 256  # per-stream queue; a slow reader loses superseded progress only

    @field_validator("root_path", mode="before")
    @classmethod
    def _no_trailing_slash(cls, value: object) -> object:
        """ "/studio/" and "/studio" mean the same prefix; "/" means none."""
        return value.rstrip("/") if isinstance(value, str) else value

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
