"""Gated diarization models (issue 15): the token, the up-front refusal, the parts a pipeline brings.

The session hub gates pyannote's pipeline and segmentation model as the Hub does (files answer
401 ``GatedRepo`` without a token, 403 with a token whose owner has not accepted; ``model_info``
answers). Tests that change a hub's gating use a private ``FakeHub`` so nothing leaks into
other tests.
"""

from __future__ import annotations

import ast
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import constants as hf_constants

from modelmgr.core.catalog import Catalog
from modelmgr.core.errors import AuthRequired, GatedRepo, TokenUnreadable
from modelmgr.core.settings import Settings
from modelmgr.models import remote as remote_module
from modelmgr.models.remote import Remote
from modelmgr.services import Services
from tests import tiny_models
from tests.conftest import ACCEPTED_TOKEN, DIARIZER, UNACCEPTED_TOKEN, hub_settings, wait_until
from tests.hf_cli import assert_hf_cache_verify_clean
from tests.hub import FakeHub

SEGMENTATION = tiny_models.PYANNOTE_SEGMENTATION
EMBEDDING = tiny_models.PYANNOTE_EMBEDDING
PYANNOTE = (DIARIZER, SEGMENTATION, EMBEDDING)
FILES = {DIARIZER: ("config.yaml",), SEGMENTATION: ("pytorch_model.bin", "config.yaml")}
FILES[EMBEDDING] = FILES[SEGMENTATION]


def publish_pyannote(hub: FakeHub, tiny: tiny_models.TinyPyannote) -> FakeHub:
    """The three pyannote repos on ``hub`` (a private one: its gating is the test's own)."""
    hub.add_repo_from_dir(DIARIZER, tiny.pipeline)
    hub.add_repo_from_dir(SEGMENTATION, tiny.segmentation)
    hub.add_repo_from_dir(EMBEDDING, tiny.embedding)
    hub.accepted_tokens.add(ACCEPTED_TOKEN)
    return hub


@pytest.fixture
def private_hub(tiny_pyannote: tiny_models.TinyPyannote) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        yield publish_pyannote(hub, tiny_pyannote)


def build(settings: Settings) -> Services:
    return Services.build(settings)


@pytest.fixture
def no_token(gated_hub: FakeHub, tmp_path: Path) -> Iterator[Services]:
    services = build(hub_settings(gated_hub, tmp_path))
    yield services
    services.shutdown()


def status(services: Services, model_id: str) -> dict:
    return services.downloads.describe(services.catalog.get(model_id))


def wait_downloaded(services: Services, *model_ids: str, timeout: float = 120) -> None:
    for model_id in model_ids:
        wait_until(
            lambda m=model_id: status(services, m)["status"] in ("downloaded", "error", "cancelled"),
            timeout,
            f"{model_id} to finish",
        )
        model = status(services, model_id)
        assert model["status"] == "downloaded", model


def pyannote_requests(hub: FakeHub) -> list[tuple[str, str]]:
    return [r for r in hub.requests if "pyannote" in r[1]]


# --- no token: refused by the request, nothing asked of the hub -------------------------------
def test_no_token_refuses_the_pipeline_at_once_naming_both_gated_repos(no_token: Services, gated_hub) -> None:
    with pytest.raises(AuthRequired) as refused:
        no_token.downloads.start(DIARIZER)
    message = refused.value.message
    assert refused.value.code == "auth_required"
    assert "HF_TOKEN" in message and "hf auth login" in message and "MODELMGR_HF_TOKEN" in message
    assert f"{gated_hub.url}/{DIARIZER}" in message and f"{gated_hub.url}/{SEGMENTATION}" in message
    assert EMBEDDING not in message, "the open embedding model needs no acceptance"
    assert pyannote_requests(gated_hub) == [], "refused from the catalog's gated flags: no network"
    for repo in PYANNOTE:
        assert not no_token.store.repo_dir(no_token.catalog.get(repo)).exists(), repo
    # The refusal shows on the models like any failure (Models tab, GET /api/models).
    for model_id in (DIARIZER, SEGMENTATION):
        model = status(no_token, model_id)
        assert (model["status"], model["error_code"]) == ("error", "auth_required")
        assert "HF_TOKEN" in model["error"]
    assert status(no_token, EMBEDDING)["error"] is None
    assert no_token.downloads.transfers_started == 0


def test_no_token_names_the_gated_part_when_the_pipeline_is_already_here(
    diarize_settings: Settings, gated_hub: FakeHub, tmp_path: Path
) -> None:
    with_token = build(diarize_settings)
    try:
        with_token.downloads.start(DIARIZER)
        wait_downloaded(with_token, *PYANNOTE)
        with_token.downloads.delete(SEGMENTATION)
    finally:
        with_token.shutdown()
    gated_hub.reset_counters()
    services = build(diarize_settings.model_copy(update={"hf_token": None}))
    try:
        with pytest.raises(AuthRequired) as refused:
            services.downloads.start(DIARIZER)
        message = refused.value.message
        assert f"{DIARIZER} needs {SEGMENTATION}, which is gated" in message
        assert f"{gated_hub.url}/{SEGMENTATION}" in message and f"{gated_hub.url}/{DIARIZER}" not in message
        assert pyannote_requests(gated_hub) == []
    finally:
        services.shutdown()


def test_the_open_embedding_model_downloads_without_a_token(no_token: Services, gated_hub: FakeHub) -> None:
    assert no_token.downloads.start(EMBEDDING).status == "started"
    wait_downloaded(no_token, EMBEDDING)
    assert gated_hub.authorizations == []


# --- a token whose owner has not accepted: 403 from the request ---------------------------------
def test_an_unaccepted_token_is_refused_by_the_request_with_gated_repo(
    gated_hub: FakeHub, tmp_path: Path
) -> None:
    services = build(hub_settings(gated_hub, tmp_path, hf_token=UNACCEPTED_TOKEN))
    try:
        with pytest.raises(GatedRepo) as refused:
            services.downloads.start(DIARIZER)
        message = refused.value.message
        assert refused.value.code == "gated_repo"
        assert "has not accepted" in message and f"{gated_hub.url}/{DIARIZER}" in message
        assert UNACCEPTED_TOKEN not in message
        for repo, files in FILES.items():
            for path in files:
                assert gated_hub.get_count(repo, path) == 0, (repo, path)
        heads = [p for m, p in gated_hub.requests if m == "HEAD"]
        assert any(p.startswith(f"/{DIARIZER}/resolve/") for p in heads), "one HEAD asked the hub"
        assert status(services, DIARIZER)["error_code"] == "gated_repo"
        # The segmentation model alone: the same, naming it.
        with pytest.raises(GatedRepo) as alone:
            services.downloads.start(SEGMENTATION)
        assert f"{gated_hub.url}/{SEGMENTATION}" in alone.value.message
        assert services.downloads.transfers_started == 0
    finally:
        services.shutdown()


REVOKED_TOKEN = "hf_revoked_0123456789abcdefghijkl"  # the Hub no longer knows it


def test_a_revoked_token_is_named_for_gated_and_public_models_alike(
    gated_hub: FakeHub, tmp_path: Path
) -> None:
    """The Hub answers every request carrying a token it does not know with 401 "Invalid
    credentials" (no X-Error-Code), public repos too: the words are about the token."""
    gated_hub.invalid_tokens.add(REVOKED_TOKEN)
    services = build(hub_settings(gated_hub, tmp_path, hf_token=REVOKED_TOKEN))
    try:
        with pytest.raises(AuthRequired) as refused:  # the gated pipeline: by the request itself
            services.downloads.start(DIARIZER)
        message = refused.value.message
        assert refused.value.code == "auth_required"
        assert "did not accept the token from HF_TOKEN" in message and "hf auth whoami" in message, message
        assert REVOKED_TOKEN not in message
        assert status(services, DIARIZER)["error_code"] == "auth_required"
        job = services.downloads.start("tiny").job  # a public model: its download says the same
        assert job is not None and job.done.wait(120)
        model = status(services, "tiny")
        assert model["status"] == "error" and model["error_code"] == "auth_required", model
        assert "invalid or expired" in model["error"] and REVOKED_TOKEN not in model["error"]
        assert gated_hub.get_count("Systran/faster-whisper-tiny", "model.bin") == 0
    finally:
        gated_hub.invalid_tokens.discard(REVOKED_TOKEN)
        services.shutdown()


def test_a_hung_hub_holds_a_gated_request_for_one_probe_not_one_per_repo(tmp_path: Path) -> None:
    """A hub that accepts connections and never answers: the up-front probe cannot say, so the
    request goes ahead (the download then reports the hub) after one probe's deadline, not one
    per gated repo the pipeline names."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts; nobody answers
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    settings = hub_settings(SimpleNamespace(url=endpoint), tmp_path, hf_token=ACCEPTED_TOKEN)  # type: ignore[arg-type]
    services = build(settings)
    try:
        started = time.monotonic()
        result = services.downloads.start(DIARIZER)
        took = time.monotonic() - started
        assert result.job is not None, "not refused: the hub could not say"
        # model_info times out (the HEAD after it is never sent); a margin for a loaded machine.
        one_probe = remote_module.PROBE_TIMEOUT_S
        assert took < 2 * one_probe, f"the request waited {took:.1f} s for a hung hub"
        services.downloads.cancel(DIARIZER)
    finally:
        services.shutdown()
        silent.close()


# --- the accepted token: the pipeline and its parts, once, in the HF cache layout ----------------
def test_the_accepted_token_brings_the_pipeline_and_both_parts_once(
    diarize_settings: Settings, gated_hub: FakeHub
) -> None:
    services = build(diarize_settings)
    try:
        result = services.downloads.start(DIARIZER, with_align=False)  # parts come regardless
        assert result.status == "started"
        assert services.downloads.start(DIARIZER).status == "already_downloading"
        wait_downloaded(services, *PYANNOTE)
        for repo, files in FILES.items():  # each byte once (the 26.6 MB embedding comes in ranged parts)
            manifest = services.store.load_manifest(services.catalog.get(repo))
            assert manifest is not None and sorted(f.path for f in manifest.files) == sorted(files)
            for entry in manifest.files:
                assert gated_hub.bytes_sent(repo, entry.path) == entry.size, (repo, entry.path)
        assert services.downloads.start(DIARIZER).status == "already_downloaded"
        assert services.downloads.transfers_started == 3
        assert gated_hub.authorizations and set(gated_hub.authorizations) == {f"Bearer {ACCEPTED_TOKEN}"}
        pipeline = status(services, DIARIZER)
        assert pipeline["parts"] == [SEGMENTATION, EMBEDDING] and pipeline["gated"] is True
        for repo in PYANNOTE:  # `hf cache verify` finds every file we fetched whole, as for other models
            # (the pipeline repo also holds a README.md, which nothing needs: only the models' repos
            # are checked for files missing)
            assert_hf_cache_verify_clean(diarize_settings, gated_hub, repo, strict=repo != DIARIZER)
            assert not services.store.verify(services.catalog.get(repo)), repo
        # Deletable like every model: the pipeline goes, the models it ran stay (shared).
        assert services.downloads.delete(DIARIZER) > 0
        assert status(services, DIARIZER)["status"] == "not_downloaded"
        assert status(services, SEGMENTATION)["status"] == "downloaded"
    finally:
        services.shutdown()


def test_the_parts_are_those_the_downloaded_config_yaml_names(
    private_hub: FakeHub, tiny_pyannote: tiny_models.TinyPyannote, tmp_path: Path
) -> None:
    """A config.yaml naming only the embedding model (``@revision`` and all): only that comes."""
    config = (tiny_pyannote.pipeline / "config.yaml").read_text()
    assert f"segmentation: {SEGMENTATION}" in config
    config = config.replace(f"segmentation: {SEGMENTATION}", "segmentation: /models/local-segmentation")
    config = config.replace(f"embedding: {EMBEDDING}", f"embedding: {EMBEDDING}@main")
    private_hub.add_repo(DIARIZER, {"config.yaml": config.encode()})
    services = build(hub_settings(private_hub, tmp_path, hf_token=ACCEPTED_TOKEN))
    try:
        assert status(services, DIARIZER)["parts"] == [SEGMENTATION, EMBEDDING], "the catalog's, until then"
        services.downloads.start(DIARIZER)
        wait_downloaded(services, DIARIZER, EMBEDDING)
        assert status(services, DIARIZER)["parts"] == [EMBEDDING]
        assert status(services, SEGMENTATION)["status"] == "not_downloaded"
        assert private_hub.get_count(SEGMENTATION, "pytorch_model.bin") == 0
    finally:
        services.shutdown()


# --- where the token comes from ------------------------------------------------------------------
def test_the_token_file_of_hf_auth_login_is_used_when_no_token_is_set(
    gated_hub: FakeHub, tmp_path: Path, monkeypatch
) -> None:
    token_file = tmp_path / "hf-login" / "token"
    token_file.parent.mkdir()
    token_file.write_text(ACCEPTED_TOKEN + "\n")
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(token_file))
    services = build(hub_settings(gated_hub, tmp_path))
    try:
        assert services.downloads.start(DIARIZER).status == "started"
        wait_downloaded(services, *PYANNOTE)
        assert set(gated_hub.authorizations) == {f"Bearer {ACCEPTED_TOKEN}"}
    finally:
        services.shutdown()


def test_the_setting_wins_over_the_token_file(gated_hub: FakeHub, tmp_path: Path, monkeypatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(UNACCEPTED_TOKEN)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(token_file))
    remote = Remote(hub_settings(gated_hub, tmp_path, hf_token=ACCEPTED_TOKEN))
    assert remote.token.get() == ACCEPTED_TOKEN and remote.token.source().startswith("HF_TOKEN")
    assert Remote(hub_settings(gated_hub, tmp_path)).token.get() == UNACCEPTED_TOKEN


def test_the_token_comes_from_every_variable_huggingface_hub_reads(monkeypatch) -> None:
    """MODELMGR_HF_TOKEN, then HF_TOKEN, then HUGGING_FACE_HUB_TOKEN (huggingface_hub still
    honours that older name, and so do older guides): the first one set wins."""
    for name in ("MODELMGR_HF_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().hf_token is None
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_old_name")
    assert Settings().hf_token.get_secret_value() == "hf_old_name"
    monkeypatch.setenv("HF_TOKEN", "hf_new_name")
    assert Settings().hf_token.get_secret_value() == "hf_new_name"
    monkeypatch.setenv("MODELMGR_HF_TOKEN", "hf_ours")
    assert Settings().hf_token.get_secret_value() == "hf_ours"


@pytest.mark.parametrize("broken", ["a-directory", "not-utf8"])
def test_an_unreadable_token_file_is_named_for_gated_models_and_skipped_for_public_ones(
    gated_hub: FakeHub, tmp_path: Path, monkeypatch, caplog, broken: str
) -> None:
    token_file = tmp_path / "token"
    if broken == "a-directory":
        token_file.mkdir()
    else:
        token_file.write_bytes(b"\xff\xfehf_\x00\x81")
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(token_file))
    services = build(hub_settings(gated_hub, tmp_path))
    try:
        with pytest.raises(TokenUnreadable) as refused:
            services.downloads.start(DIARIZER)
        assert str(token_file) in refused.value.message and "HF_TOKEN" in refused.value.message
        assert status(services, DIARIZER)["error_code"] == "token_unreadable"
        assert pyannote_requests(gated_hub) == []
        caplog.set_level("WARNING")
        assert services.downloads.start("tiny", with_align=False).status == "started"
        wait_downloaded(services, "tiny")
        assert gated_hub.authorizations == [], "public models go without a token"
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any(str(token_file) in w and "without a token" in w for w in warnings), warnings
    finally:
        services.shutdown()


# --- a hub that refuses in the background (gates its API too, or files of an open-listed repo) ---
@pytest.mark.parametrize("token,code", [(None, "auth_required"), (UNACCEPTED_TOKEN, "gated_repo")])
@pytest.mark.parametrize("api_too", [True, False], ids=["api-gated", "files-gated"])
def test_a_refusal_in_the_background_shows_its_code_and_the_repo_page(
    private_hub: FakeHub, tmp_path: Path, token: str | None, code: str, api_too: bool
) -> None:
    """The embedding model is open in the catalog (no up-front check): a hub that gates it anyway
    fails the download in the background, with the same named error as the request would give."""
    private_hub.gate(EMBEDDING, api_too=api_too)
    services = build(hub_settings(private_hub, tmp_path, hf_token=token))
    try:
        assert services.downloads.start(EMBEDDING).status == "started"
        wait_until(lambda: status(services, EMBEDDING)["status"] == "error", 60, "the refusal")
        model = status(services, EMBEDDING)
        assert model["error_code"] == code, model
        assert f"{private_hub.url}/{EMBEDDING}" in model["error"]
        assert private_hub.get_count(EMBEDDING, "pytorch_model.bin") == 0
    finally:
        services.shutdown()


@pytest.mark.parametrize("token,error", [(None, AuthRequired), (UNACCEPTED_TOKEN, GatedRepo)])
def test_remote_resolve_maps_a_gated_api_by_status(
    private_hub: FakeHub, tmp_path: Path, token: str | None, error: type
) -> None:
    private_hub.gate(SEGMENTATION, api_too=True)
    remote = Remote(hub_settings(private_hub, tmp_path, hf_token=token))
    catalog = Catalog(hub_settings(private_hub, tmp_path))
    with pytest.raises(error) as refused:
        remote.resolve(catalog.get(SEGMENTATION))
    assert f"{private_hub.url}/{SEGMENTATION}" in refused.value.message
    if token:
        assert token not in refused.value.message
    private_hub.accepted_tokens.add(UNACCEPTED_TOKEN)  # the owner accepts: the same call answers
    if token:
        assert remote.resolve(catalog.get(SEGMENTATION)).total_bytes > 0


# --- the token goes to the hub only ----------------------------------------------------------------
def test_the_token_reaches_the_hub_and_never_the_host_it_redirects_to(
    diarize_settings: Settings, gated_hub: FakeHub
) -> None:
    gated_hub.redirect_resolve("localhost")  # the Hub's 302 to its CDN (restored by the hub fixture)
    services = build(diarize_settings)
    try:
        services.downloads.start(DIARIZER)
        wait_downloaded(services, *PYANNOTE)
    finally:
        services.shutdown()
    assert gated_hub.authorizations and set(gated_hub.authorizations) == {f"Bearer {ACCEPTED_TOKEN}"}
    signed = gated_hub.signed_requests
    assert signed and all(s["host"].startswith("localhost:") for s in signed)
    assert all(s["authorization"] == "" for s in signed), "the token never goes to another host"


def test_the_cluster_code_never_carries_the_token() -> None:
    """Workers read HF_TOKEN from their own environment: nothing in distributed/ ships settings
    (nor the token) through Redis or Celery."""
    folder = Path(__file__).resolve().parents[2] / "modelmgr" / "distributed"
    for path in folder.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "hf_token" not in source and "get_secret_value" not in source, path
        names = {n.attr for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute)}
        assert not names & {"model_dump", "model_dump_json"}, f"{path} serializes a model (Settings?)"


# --- the listing -------------------------------------------------------------------------------
def test_the_listing_shows_diarization_models_with_sizes_parts_and_gates(no_token: Services) -> None:
    rows = {m["id"]: m for m in no_token.downloads.snapshot()}
    assert rows[DIARIZER]["kind"] == "diarization" and rows[DIARIZER]["parts"] == [SEGMENTATION, EMBEDDING]
    assert rows[SEGMENTATION]["parts"] == [] and rows["tiny"]["parts"] == []
    assert [rows[m]["gated"] for m in PYANNOTE] == [True, True, False]
    sizes = {m: (rows[m]["size_bytes"], rows[m]["size_source"]) for m in PYANNOTE}
    assert sizes == {
        DIARIZER: (1500, "approximate"),
        SEGMENTATION: (5_900_000, "approximate"),
        EMBEDDING: (26_600_000, "approximate"),
    }
