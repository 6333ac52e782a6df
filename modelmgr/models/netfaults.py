"""Name the network faults: one place turns transport exceptions into typed errors.

huggingface_hub 2.x talks through ``httpx2`` while our byte transfers use
``httpx``; the two exception families are unrelated classes with the same
names, so both are handled here and nowhere else. Each error says what to check.
"""

from __future__ import annotations

import ssl

import httpx

from modelmgr.core.errors import DownloadFailed, HubTimeout, HubUnreachable

try:  # huggingface_hub's HTTP stack (a dependency of huggingface_hub>=2)
    import httpx2
except ImportError:  # pragma: no cover - older huggingface_hub
    httpx2 = None  # type: ignore[assignment]

_FAMILIES = tuple(m for m in (httpx, httpx2) if m is not None)


def transport_error_types() -> tuple[type[BaseException], ...]:
    """Every transport-level exception class of both HTTP stacks (for ``except``)."""
    return tuple(m.TransportError for m in _FAMILIES)


def is_transport_error(exc: BaseException) -> bool:
    return isinstance(exc, transport_error_types())


def network_error(exc: BaseException, where: str) -> DownloadFailed:
    """A named, actionable error for a transport failure while talking to ``where``."""
    text = str(exc) or type(exc).__name__
    if any(isinstance(exc, m.TimeoutException) for m in _FAMILIES) and not any(
        isinstance(exc, m.ConnectTimeout) for m in _FAMILIES
    ):
        return HubTimeout(
            f"{where} accepted the connection but did not answer in time ({text}); "
            "the hub or mirror may be overloaded: try again, or check HF_ENDPOINT and the proxy"
        )
    if _caused_by(exc, ssl.SSLError) or "certificate" in text.lower() or "ssl" in text.lower():
        return HubUnreachable(
            f"TLS failed with {where} ({text}): check the system clock, the proxy and "
            "REQUESTS_CA_BUNDLE / SSL_CERT_FILE"
        )
    lowered = text.lower()
    if (
        "name or service not known" in lowered
        or "nodename nor servname" in lowered
        or ("name resolution" in lowered)
    ):
        return HubUnreachable(
            f"cannot resolve the host name of {where} ({text}): check HF_ENDPOINT and the DNS settings"
        )
    if any(isinstance(exc, m.ConnectTimeout) for m in _FAMILIES):
        return HubUnreachable(
            f"{where} did not accept a connection in time ({text}): check HF_ENDPOINT, the proxy "
            "(HTTPS_PROXY) and the network"
        )
    return HubUnreachable(
        f"cannot reach {where} ({text}): check HF_ENDPOINT, the proxy (HTTPS_PROXY) and the network"
    )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
