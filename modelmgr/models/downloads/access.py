"""Gated models are refused by the download request itself, not later in the background.

The catalog knows which repos the Hub gates (pyannote's pipeline and segmentation model), so
a request for one that is not on disk, or for a pipeline whose gated part is not, needs no
network to be refused when there is no token at all: 401 ``auth_required`` at once, naming
the repos whose conditions to accept. With a token, one quick probe per gated repo (model_info,
then a HEAD of one file, under a deadline; ``Remote.check_access``) turns the hub's 401/403 into
the same refusal. A probe that cannot answer (the hub unreachable or slow) lets the download
go ahead, and the other gated repos are not asked (a hung hub holds the request for one
probe's deadline, not one per repo): the download reports what it meets, with its retries.
Offline, nothing is asked (the download says ``offline``).
"""

from __future__ import annotations

from collections.abc import Callable

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import AccessDenied, ModelMgrError, TokenUnreadable
from modelmgr.models.hub_token import auth_required
from modelmgr.models.remote import Remote


def check_up_front(remote: Remote, spec: ModelSpec, gated: list[ModelSpec]) -> None:
    """Raise ``AuthRequired``, ``GatedRepo`` or ``TokenUnreadable`` when ``gated`` (``spec`` and/or
    the parts it brings, the gated ones that are not on disk) cannot be fetched."""
    if not gated or remote.settings.offline:
        return
    token = remote.token.get()
    if token is None:
        raise auth_required(remote.endpoint, spec.id, [s.repo_id for s in gated], None)
    for part in gated:
        if not remote.check_access(part, token, for_model=spec):
            return  # the hub could not say (a hung hub would make the request wait once per part)


def refuse_gated(
    remote: Remote,
    catalog: Catalog,
    spec: ModelSpec,
    local: str,
    brought: list[str],
    record_failure: Callable[[ModelSpec, ModelMgrError], None],
) -> None:
    """``check_up_front`` for a request of ``spec`` (``local``: its status on disk) and the models it
    brings (``brought``, ids not on disk); a refusal is recorded on every model it names."""
    gated = [spec] if spec.gated and local != "downloaded" else []
    gated += [part for part in map(catalog.get, brought) if part.gated]
    try:
        check_up_front(remote, spec, gated)  # no token: no network; else one quick probe each
    except (AccessDenied, TokenUnreadable) as exc:  # 401/403/503 at once, shown on the models too
        for refused in dict.fromkeys([spec, *gated]):
            record_failure(refused, exc)
        raise
