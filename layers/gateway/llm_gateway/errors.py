"""One error type for the whole gateway, rendered in the caller's family shape (API.md section 1).

Code deep inside (admission, providers, store) raises `GatewayError` with a *kind*; only the HTTP
layer knows which family the caller speaks and turns the kind into that family's body. Keeping the
mapping in this one table is what keeps the three families consistent.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

Family = Literal["openai", "anthropic", "platform"]

Kind = Literal[
    "invalid_request", "context_length_exceeded", "invalid_api_key", "insufficient_balance", "permission",
    "not_found", "model_not_found", "method_not_allowed", "request_too_large", "unprocessable", "rate_limited",
    "upstream_rate_limited", "internal", "unavailable", "upstream_error", "upstream_timeout",
]

# kind -> (status, openai type, openai code, anthropic error.type, platform errorType)
_KINDS: dict[Kind, tuple[int, str, str | None, str, str]] = {
    "invalid_request": (400, "invalid_request_error", None, "invalid_request_error", "invalid_request_error"),
    "context_length_exceeded": (400, "invalid_request_error", "context_length_exceeded", "invalid_request_error", "context_length_exceeded"),
    "invalid_api_key": (401, "invalid_request_error", "invalid_api_key", "authentication_error", "invalid_api_key"),
    "insufficient_balance": (402, "insufficient_balance", "insufficient_balance", "billing_error", "insufficient_balance_error"),
    "permission": (403, "permission_error", "model_not_permitted", "permission_error", "permission_error"),
    "not_found": (404, "invalid_request_error", "not_found", "not_found_error", "not_found_error"),
    "model_not_found": (404, "invalid_request_error", "model_not_found", "not_found_error", "not_found_error"),
    "method_not_allowed": (405, "invalid_request_error", "method_not_allowed", "invalid_request_error", "invalid_request_error"),
    "request_too_large": (413, "invalid_request_error", "request_too_large", "request_too_large", "request_too_large"),
    "unprocessable": (422, "invalid_request_error", None, "invalid_request_error", "invalid_request_error"),
    "rate_limited": (429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error", "rate_limit_error"),
    "upstream_rate_limited": (429, "rate_limit_error", "upstream_rate_limited", "rate_limit_error", "rate_limit_error"),
    "internal": (500, "server_error", "internal_error", "api_error", "internal_error"),
    # the gateway's own store stayed throttled or locked: nothing was done, come back (Retry-After)
    "unavailable": (503, "server_error", "service_unavailable", "overloaded_error", "service_unavailable"),
    "upstream_error": (502, "upstream_error", "upstream_error", "api_error", "upstream_error"),
    "upstream_timeout": (504, "upstream_error", "upstream_timeout", "api_error", "upstream_timeout"),
}


class GatewayError(Exception):
    """A refusal or failure the client should see, in its own family's shape.

    `retryable` says whether the same request may succeed elsewhere (another channel of the model),
    which failover asks before the first byte reaches the client: a refusal of the gateway's own or
    of the client's request never is.
    """

    retryable: bool = False

    def __init__(
        self,
        kind: Kind,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool | None = None,
        worded: dict[Family, str] | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        super().__init__(message)
        self.kind: Kind = kind
        # the message in a family's own words, where its clients recognise an error by them
        self.worded = worded
        if retryable is not None:
            self.retryable = retryable
        self.message = message
        self.param = param
        self.code = code
        self.status = status or _KINDS[kind][0]
        self.headers = headers or {}

    def body(self, family: Family) -> dict[str, Any]:
        _, oa_type, oa_code, an_type, pf_type = _KINDS[self.kind]
        message = self.worded.get(family, self.message) if self.worded else self.message
        if family == "anthropic":
            return {"type": "error", "error": {"type": an_type, "message": message}}
        if family == "platform":
            return {"statusCode": self.status, "message": message, "errorType": pf_type, "data": None}
        return {
            "error": {
                "message": message,
                "type": oa_type,
                "param": self.param,
                "code": self.code if self.code is not None else oa_code,
            }
        }

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"GatewayError({self.kind!r}, {self.message!r}, status={self.status})"


class UpstreamError(GatewayError):
    """The upstream failed, timed out, or refused the gateway (not the client): another channel may
    succeed, so it is retryable unless the upstream refused the client's own request (400, 404,
    413, 422), which is answered as it is."""

    retryable = True


# Upstream refusals that are the client's to fix: passed through, never retried elsewhere.
CLIENT_KINDS: frozenset[Kind] = frozenset({"invalid_request", "not_found", "unprocessable", "request_too_large"})


def kind_for_upstream_status(status: int) -> Kind:
    """How an upstream's HTTP error status is shown to our client (API.md section 1)."""
    if status == 400:
        return "invalid_request"
    if status == 404:
        return "not_found"
    if status == 413:
        return "request_too_large"
    if status == 422:
        return "unprocessable"
    if status == 429:
        return "upstream_rate_limited"
    if status == 504:
        return "upstream_timeout"
    # 401/403 mean the operator's provider credentials are wrong: never the client's auth failure.
    return "upstream_error"


assert set(get_args(Kind)) == set(_KINDS), "every error kind has its row"


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)
