"""The gateway on Lambda: provider secrets at cold start, and the app for one endpoint family.

Every function in template.yaml is a few lines over this module (functions/<family>/): buffered
families hand `buffered_handler([...])` to the Lambda runtime (Mangum), streaming ones serve
`family_app([...])` under uvicorn behind the Lambda Web Adapter (run.sh).

Provider credentials live in one Secrets Manager secret holding a JSON object of NAME: value
(`GATEWAY_SECRETS_ARN`: the template's default, one GetSecretValue per cold start, a call Secrets
Manager serves at up to 10,000 per second) and, optionally, in SSM Parameter Store
(`GATEWAY_SSM_PREFIX`, one SecureString per variable, e.g. `/llm-gateway/OPENAI_API_KEY`; 40
calls per second by default, so not read unless set). With both set, both are read, SSM first, and
the secret's value wins for a name in both. They are read once per process, before the settings
are built, and only into the process environment: never logged, never returned.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["load_provider_secrets", "family_app", "buffered_handler"]

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_loaded = False


def load_provider_secrets(environ: MutableMapping[str, str] | None = None, *, force: bool = False) -> list[str]:
    """Copy provider variables from SSM / Secrets Manager into `environ` (default os.environ), once.

    A variable already set in the function's own environment wins, so an operator can override one
    value without touching the secret. Returns the names loaded (never the values).
    """
    global _loaded
    env = os.environ if environ is None else environ
    if _loaded and not force and environ is None:
        return []
    found: dict[str, str] = {}
    prefix = env.get("GATEWAY_SSM_PREFIX")
    if prefix:
        found.update(_from_ssm(prefix))
    arn = env.get("GATEWAY_SECRETS_ARN")
    if arn:
        found.update(_from_secrets_manager(arn))
    loaded = []
    for name, value in found.items():
        if _NAME.match(name) and value and not env.get(name):
            env[name] = value
            loaded.append(name)
    if environ is None:
        _loaded = True
        from .config import reset_settings

        reset_settings()
    return sorted(loaded)


def family_app(families: Iterable[str]):
    """The ASGI app of `families` with provider secrets loaded: what each function serves."""
    load_provider_secrets()
    from .http.app import create_app

    return create_app(families=list(families))


def buffered_handler(families: Iterable[str]) -> Any:
    """A Lambda handler (API Gateway REST proxy events) for a buffered family, through Mangum.

    Lifespan is off: a Lambda invocation is not the app's life, and the shared HTTP clients must
    outlive it to stay warm.
    """
    from mangum import Mangum

    return Mangum(family_app(families), lifespan="off")


def _from_ssm(prefix: str) -> dict[str, str]:
    from .awsclients import client

    path = "/" + prefix.strip("/")
    out: dict[str, str] = {}
    paginator = client("ssm").get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=path, WithDecryption=True, Recursive=False):
        for param in page["Parameters"]:
            out[param["Name"].rsplit("/", 1)[-1]] = param["Value"]
    return out


def _from_secrets_manager(arn: str) -> dict[str, str]:
    from .awsclients import client

    raw = client("secretsmanager").get_secret_value(SecretId=arn).get("SecretString") or "{}"
    try:
        values = json.loads(raw)
    except ValueError:
        raise RuntimeError("GATEWAY_SECRETS_ARN must hold a JSON object of NAME: value") from None
    if not isinstance(values, dict):
        raise RuntimeError("GATEWAY_SECRETS_ARN must hold a JSON object of NAME: value")
    return {str(k): str(v) for k, v in values.items() if v is not None}
