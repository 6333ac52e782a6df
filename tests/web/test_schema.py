"""Property-based API test: schemathesis over /openapi.json, no 5xx for any generated request.

Runs against the API-only app with a hub on a closed port, so every download or update
fails fast instead of fetching; /api/events is left out (an endless stream).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from modelmgr.core.settings import Settings
from modelmgr.web.server import create_app

EXAMPLES_PER_OPERATION = 60  # per mode (valid, and invalid where there is a body): 660 examples


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("schema")
    dead = f"http://127.0.0.1:{_closed_port()}"
    settings = Settings(
        hf_endpoint=dead,
        hf_home=root / "hf",
        torch_home=root / "torch",
        torch_models_base_url=f"{dead}/torchaudio",
        nltk_punkt_url=f"{dead}/punkt.zip",
        download_timeout_s=2.0,
        min_free_bytes=0,
        resume_on_start=False,
        allowed_hosts=["testserver"],  # the in-process ASGI client's Host
    )
    app = create_app(settings, ui=False)
    yield app
    app.state.services.shutdown()


@pytest.fixture
def sys_modules_hypothesis_can_walk() -> Iterator[None]:
    """Hypothesis reads ``__file__`` of every module in ``sys.modules``. speechbrain (imported with
    pyannote by the diarization tests earlier in this process) leaves lazy placeholders there for
    its optional integrations (and deprecated redirects to them); reading one whose package is
    missing (k2) raises ImportError instead of AttributeError. Those are set aside for this test
    and put back after it."""
    broken = {}
    for name, module in list(sys.modules.items()):
        try:  # LazyModule and its subclass DeprecatedModuleRedirect (speechbrain.k2_integration)
            getattr(module, "__file__", None)
        except Exception:
            broken[name] = sys.modules.pop(name)
    yield
    sys.modules.update(broken)


def test_no_generated_request_gets_a_server_error(api_app, sys_modules_hypothesis_can_walk) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app).exclude(path="/api/events")
    calls: dict[str, int] = {}
    failures: list[str] = []
    operations = [(result.ok(), mode) for result in schema.get_all_operations() for mode in GenerationMode]
    for operation, mode in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @hyp_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case) -> None:
            label = case.operation.label
            calls[label] = calls.get(label, 0) + 1
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{label}: {response.status_code} {response.text[:200]}")
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance])

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to make invalid
    assert not failures, failures[:5]
    assert sum(calls.values()) >= 500, calls


def _form_fields(app, path: str) -> set[str]:
    body = app.openapi()["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
    return set(body["schema"]["properties"])


def test_the_schema_lists_every_form_field_the_upload_routes_read(api_app) -> None:
    """The upload routes read their multipart forms themselves; their schema (what /docs shows and
    what the generated requests above use) must name every field they take."""
    from modelmgr.web.api.transcriptions import JobForm

    assert _form_fields(api_app, "/api/transcriptions") == {"file", *JobForm.model_fields}
    openai_fields = {
        "file",
        "model",
        "language",
        "prompt",
        "response_format",
        "temperature",
        "timestamp_granularities[]",
        "stream",
        "num_speakers",
        "min_speakers",
        "max_speakers",
    }
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
        assert _form_fields(api_app, path) == openai_fields, path
