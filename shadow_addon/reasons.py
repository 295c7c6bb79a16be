"""Why a copy was not delivered to its shadow: the `reason` label of `shadow_dropped_total`, one vocabulary for the
sender, the addon, the metrics, the dashboard, the replay gate and the README."""

from __future__ import annotations

from enum import StrEnum


class DropReason(StrEnum):
    """A StrEnum: each member is its label (`DropReason.TIMEOUT == "timeout"`), so the metric stays a plain string."""

    # Sent, without a usable answer
    OVERLOAD = "overload"
    TIMEOUT = "timeout"
    RESET = "reset"
    CONNECT_ERROR = "connect_error"
    DNS_ERROR = "dns_error"
    TLS_ERROR = "tls_error"
    BAD_RESPONSE = "bad_response"
    INTERIM_LIMIT = "interim_limit"
    HEAD_LIMIT = "head_limit"
    RESPONSE_LIMIT = "response_limit"
    CANCELLED = "cancelled"
    # Never sent
    BODY_LIMIT = "body_limit"
    STREAMED = "streamed"
    UPGRADE = "upgrade"
    REDIRECT = "redirect"
    LOOP = "loop"
    CLIENT_ERROR = "client_error"
    METHOD = "method"


# Each reason in words, for the dashboard.
WORDS: dict[str, str] = {  # keyed by DropReason; a plain label finds its words too
    DropReason.OVERLOAD: "in-flight limit, backlog or memory limit full",
    DropReason.TIMEOUT: "no complete answer in time",
    DropReason.RESET: "connection reset",
    DropReason.CONNECT_ERROR: "connection refused or failed",
    DropReason.DNS_ERROR: "name did not resolve",
    DropReason.TLS_ERROR: "TLS handshake failed",
    DropReason.BAD_RESPONSE: "answer that is not valid HTTP",
    DropReason.INTERIM_LIMIT: "too many interim (1xx) responses",
    DropReason.HEAD_LIMIT: "response head too large",
    DropReason.RESPONSE_LIMIT: "response body over shadow_response_limit",
    DropReason.CANCELLED: "sender closed or rebuilt",
    DropReason.BODY_LIMIT: "body over shadow_body_limit",
    DropReason.STREAMED: "streamed body not kept",
    DropReason.UPGRADE: "CONNECT or upgrade, never mirrored",
    DropReason.REDIRECT: "answered by the proxy with a redirect, never mirrored",
    DropReason.LOOP: "already a copy",
    DropReason.CLIENT_ERROR: "client left before the request was complete",
    DropReason.METHOD: "method not in shadow_methods",
}
