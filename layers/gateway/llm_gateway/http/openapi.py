"""The OpenAPI document of every family's routes: the answers' models and the table that pairs each
route with its request and answer shapes. Imported only when `/openapi.json` is first asked for
(http.apidocs): building these models costs a Lambda entry's cold start some 35 ms otherwise.
"""

from __future__ import annotations

import importlib
import re
import warnings
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

# --------------------------------------------------------------------------------------------------
# What the routes answer (documentation only: the routes build plain dicts). Unknown fields allowed.


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(_Doc):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolCall(_Doc):
    id: str
    type: Literal["function"]
    function: dict[str, str]


class AssistantMessage(_Doc):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None
    refusal: str | None = None


class ChatChoice(_Doc):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"] | None


class ChatCompletion(_Doc):
    """The model is the one requested (a catalog name), whatever the upstream calls it."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class TextChoice(_Doc):
    index: int
    text: str
    finish_reason: str | None


class TextCompletion(_Doc):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


class Embedding(_Doc):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # str: base64 when encoding_format is base64


class EmbeddingList(_Doc):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: dict[str, int]


class Image(_Doc):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(_Doc):
    created: int
    data: list[Image]


class Model(_Doc):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Doc):
    object: Literal["list"]
    data: list[Model]


class ResponseObject(_Doc):
    """OpenAI's Responses object (forwarded for OpenAI models, translated for the others)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None


class ResponseDeleted(_Doc):
    id: str
    object: Literal["response.deleted"]
    deleted: bool


class InputItemList(_Doc):
    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class MessageUsage(_Doc):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Message(_Doc):
    """Anthropic's Message; `model` is the one requested."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"] | None
    stop_sequence: str | None
    usage: MessageUsage


class TokenCount(_Doc):
    input_tokens: int


class LegacyCompletion(_Doc):
    type: Literal["completion"]
    id: str
    completion: str
    stop_reason: str | None
    model: str


class Health(_Doc):
    status: Literal["ok"]


# platform payloads (views.py)


class KeyView(_Doc):
    key_id: str
    key: str  # the full key only in the answer that created it; masked (sk-abcde...wxyz) elsewhere
    user_id: str
    remark: str
    permissions: list[str]  # empty: every model; a trailing * matches a prefix
    rpm: int | None
    is_admin: bool
    is_disabled: bool
    created_at: str | None
    used_at: str | None
    expired_at: str | None
    used_times: int
    used_fee: str
    max_fee: str | None


class UsageRecord(_Doc):
    request_id: str
    user_id: str
    key_id: str | None
    model: str
    route: str
    created_at: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost: str
    latency_ms: int
    status: int | str


class UsageSums(_Doc):
    cost: str | None
    input_tokens: int
    output_tokens: int
    requests: int


class UsagePage(_Doc):
    total: int
    records: list[UsageRecord]
    sum: UsageSums
    next_cursor: str | None


class UsageGroup(_Doc):
    key: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost: str


class UsageSummary(_Doc):
    groups: list[UsageGroup]
    sum: dict[str, Any]


class Balance(_Doc):
    balance: str
    free_balance: Literal["0"]
    currency: str


class Membership(_Doc):
    membership_expire_date: str | None
    tier: Literal["regular", "vip", "premium"]
    effective_tier: Literal["regular", "vip", "premium"]


class Rate(_Doc):
    kind: str
    provider: str
    input: str
    output: str
    cache_read: str | None = None
    cache_write: str | None = None
    audio_input: str | None = None
    audio_output: str | None = None
    per_request: str | dict[str, str] | None = None
    per_image: dict[str, str] | None = None
    per_1m_chars: str | None = None


class Task(_Doc):
    taskId: int
    taskType: str | None = None
    status: Literal["NOT_START", "SUBMITTED", "IN_PROGRESS", "SUCCESS", "FAILURE"]
    action: str
    progress: str
    prompt: str | None = None
    description: str | None = None
    failReason: str | None = None
    submitTime: str | None = None
    startTime: str | None = None
    finishTime: str | None = None
    webhookUrl: str | None = None
    imageDcUrl: str | None = None
    imageS3Url: str | None = None
    actions: list[dict[str, Any]] = []


class TaskList(_Doc):
    total: int
    tasks: list[Task]


T = TypeVar("T")


class Envelope(_Doc, Generic[T]):
    """Every platform answer: the HTTP status equals statusCode."""

    statusCode: Literal[200]
    message: str
    data: T


# errors, one shape per family (API.md 1)


class OpenAIErrorDetail(_Doc):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(_Doc):
    error: OpenAIErrorDetail


class AnthropicErrorDetail(_Doc):
    type: str
    message: str


class AnthropicError(_Doc):
    type: Literal["error"]
    error: AnthropicErrorDetail


class PlatformError(_Doc):
    statusCode: int
    message: str
    errorType: str
    data: None


# platform request bodies (read by body.field: JSON, form-encoded or multipart)


class NewKey(_Doc):
    remark: str | None = None
    permissions: list[str] | str | None = None  # JSON array or comma list; empty: every model
    rpm: int | None = None
    max_fee: str | None = None  # decimal amount of the currency, e.g. "5" or "0.25"
    expired_at: str | None = None  # ISO-8601


class KeyReference(_Doc):
    key: str | None = None  # the full key
    key_id: str | None = None


class KeyUpdate(NewKey, KeyReference):
    is_disabled: bool | None = None


class ClaudeWebCompletion(_Doc):
    model: str | None = None  # default claude-2-web
    prompt: str
    stream: bool | None = None


class Imagine(_Doc):
    prompt: str
    base64Array: list[str] | None = None
    type: Literal["FAST", "NORMAL"] | None = None
    webhook: str | None = None


class Blend(_Doc):
    base64Array: list[str]  # 2 to 5 data URIs
    dimensions: Literal["PORTRAIT", "SQUARE", "LANDSCAPE"] | None = None
    type: Literal["FAST", "NORMAL"] | None = None
    webhook: str | None = None


class Describe(_Doc):
    base64: str
    type: Literal["FAST", "NORMAL"] | None = None
    webhook: str | None = None


class Action(_Doc):
    taskId: int
    customId: str
    base64Mask: str | None = None
    type: Literal["FAST", "NORMAL"] | None = None
    webhook: str | None = None


class TaskQuery(_Doc):
    taskId: int


class TaskListQuery(_Doc):
    page: int | None = None
    pageSize: int | None = None  # 5 to 20


class SerperQuery(_Doc):
    q: str
    gl: str | None = None
    hl: str | None = None
    page: int | None = None
    num: int | None = None
    cache: int | None = None  # seconds, at most 86400


class AzureSpeech(_Doc):
    text: str | None = None
    voice: str | None = None
    ssml: str | None = None


# --------------------------------------------------------------------------------------------------
# the table: (method, path) -> what it takes and answers

_JSON = "application/json"
_FORM = ("application/x-www-form-urlencoded", "multipart/form-data")
_SSE = "text/event-stream"
_AUDIO = "application/octet-stream"


def _routes_table() -> dict[tuple[str, str], dict[str, Any]]:
    from . import shapes

    def model_call(request: Any, answer: Any, summary: str, *, stream: bool = True, forms: bool = False,
                   family: str = "openai") -> dict[str, Any]:
        return {"request": request, "answer": answer, "summary": summary, "stream": stream, "forms": forms,
                "family": family}

    def platform(answer: Any, summary: str, request: Any = None, query: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"request": request, "answer": Envelope[answer] if answer is not None else None,
                "summary": summary, "forms": True, "family": "platform", "query": query}

    usage_query = ("since", "until", "model", "page", "pageSize", "cursor")
    table: dict[tuple[str, str], dict[str, Any]] = {
        ("post", "/v1/chat/completions"): model_call(shapes.ChatRequest, ChatCompletion, "Chat Completions"),
        ("post", "/v1/completions"): model_call(shapes.CompletionsRequest, TextCompletion,
                                                "Legacy completions (JSON or form)", forms=True),
        ("post", "/v1/claude/web/completion"): model_call(ClaudeWebCompletion, ChatCompletion,
                                                          "A prompt answered as a chat completion", forms=True),
        ("post", "/v1/responses"): model_call(shapes.ResponsesRequest, ResponseObject, "Create a response"),
        ("get", "/v1/responses/{response_id}"): model_call(None, ResponseObject, "Get your response", stream=False),
        ("delete", "/v1/responses/{response_id}"): model_call(None, ResponseDeleted, "Delete your response",
                                                              stream=False),
        ("get", "/v1/responses/{response_id}/input_items"): model_call(None, InputItemList,
                                                                       "A response's input items", stream=False),
        ("post", "/v1/messages"): model_call(shapes.MessagesRequest, Message, "Anthropic Messages",
                                             family="anthropic"),
        ("post", "/v1/messages/count_tokens"): model_call(shapes.CountTokensRequest, TokenCount,
                                                          "Count input tokens (free, rate-limited)", stream=False,
                                                          family="anthropic"),
        ("post", "/v1/complete"): model_call(shapes.CompleteRequest, LegacyCompletion,
                                             "Anthropic legacy text completions", family="anthropic"),
        ("post", "/v1/embeddings"): model_call(shapes.EmbeddingsRequest, EmbeddingList, "Embeddings", stream=False),
        ("post", "/v1/images/generations"): model_call(shapes.ImagesRequest, ImagesResponse, "Images", stream=False,
                                                       forms=True),
        ("post", "/v1/audio/speech"): model_call(shapes.SpeechRequest, _AUDIO, "Speech (audio bytes, streamed)",
                                                 stream=False, forms=True),
        ("get", "/v1/models"): model_call(None, ModelList, "The models this key may use", stream=False),
        ("get", "/v1/models/{model_id}"): model_call(None, Model, "One model", stream=False),
        ("get", "/healthz"): {"answer": Health, "summary": "The process is up and its store answers",
                              "family": "openai", "public": True},
        ("post", "/api/v1/user/admin/new-api-token"): platform(KeyView, "Create a key (admin key)", NewKey),
        ("post", "/api/v1/user/admin/create-api-token"): platform(KeyView, "Create a key (admin key)", NewKey),
        ("post", "/api/v1/user/admin/update-api-token"): platform(KeyView, "Change a key (admin key)", KeyUpdate),
        ("post", "/api/v1/user/admin/get-api-tokens"): platform(list[KeyView], "Your user's keys, masked"),
        ("post", "/api/v1/user/admin/del-api-token"): platform(None, "Delete a key (admin key)", KeyReference),
        ("post", "/api/v1/user/admin/delete-api-token"): platform(None, "Delete a key (admin key)", KeyReference),
        ("post", "/api/v1/user/admin/get-membership-expire-date"): platform(Membership, "Tier and membership"),
        ("post", "/api/v1/user/admin/balance"): platform(Balance, "Balance"),
        ("get", "/api/v1/user/usage"): platform(UsagePage, "Usage records, newest first", query=usage_query),
        ("get", "/api/v1/user/usage/summary"): platform(UsageSummary, "Usage per UTC day or per model",
                                                        query=("since", "until", "model", "group")),
        ("get", "/api/v1/pay/model-rates"): platform(dict[str, Rate], "Prices of the models this key may use"),
        ("post", "/api/v1/ai/draw/mj/imagine"): platform(int, "Midjourney imagine: the new task id", Imagine),
        ("post", "/api/v1/ai/draw/mj/blend"): platform(int, "Midjourney blend", Blend),
        ("post", "/api/v1/ai/draw/mj/describe"): platform(int, "Midjourney describe", Describe),
        ("post", "/api/v1/ai/draw/mj/action"): platform(int, "A button of a finished task", Action),
        ("post", "/api/v1/ai/draw/mj/query"): platform(Task, "One of your tasks", TaskQuery),
        ("get", "/api/v1/ai/draw/mj/query"): platform(Task, "One of your tasks", query=("taskId",)),
        ("post", "/api/v1/ai/draw/mj/query-mj-tasks"): platform(TaskList, "Your tasks, newest first", TaskListQuery),
        ("get", "/api/v1/ai/draw/mj/query-mj-tasks"): platform(TaskList, "Your tasks, newest first",
                                                               query=("page", "pageSize")),
        ("post", "/api/v1/openapi/search/serper/v1"): platform(None, "Serper's JSON, unchanged", SerperQuery),
        ("get", "/api/v1/openapi/search/google-search/v1"): {
            "answer": dict[str, Any], "summary": "Google Custom Search's JSON, unchanged", "family": "platform",
            "query": ("q", "num", "start", "siteSearch", "siteSearchFilter", "lr", "safe", "dateRestrict", "gl",
                      "hl", "key"),
        },
        ("post", "/api/v1/openapi/azure/tts/v1"): {
            "request": AzureSpeech, "forms": True, "answer": _AUDIO, "family": "platform",
            "summary": "Azure text to speech: SSML (application/ssml+xml), or text and voice",
        },
        ("get", "/api/v1/openapi/azure/tts/voices/list/v1"): {
            "answer": list[dict[str, Any]], "summary": "Azure's voice list", "family": "platform",
        },
    }
    return table


_ERRORS = {
    "openai": ("OpenAIError", OpenAIError),
    "anthropic": ("AnthropicError", AnthropicError),
    "platform": ("PlatformError", PlatformError),
}
_STATUSES = {
    "400": "Bad body or field, or input over the model's limit",
    "401": "Key missing, unknown, disabled or expired",
    "402": "Balance or key spending cap too low for the reservation",
    "403": "Model or route not permitted to this key",
    "404": "Unknown model, response, task or key",
    "413": "Body over GATEWAY_MAX_BODY_BYTES",
    "429": "Rate limited (Retry-After seconds)",
    "502": "Upstream failed, or refused the operator's credentials",
    "503": "The gateway's store is busy (Retry-After seconds)",
    "504": "Upstream timed out",
}


def openapi_schema() -> dict[str, Any]:
    """FastAPI's schema of every family's routes, with the shapes the table gives them."""
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema

    from .app import FAMILIES, _available
    from .health import router as health_router

    routes = list(health_router.routes)
    for name in _available(FAMILIES):
        routes.extend(importlib.import_module(FAMILIES[name]).router.routes)
    with warnings.catch_warnings():  # aliases share a function, so an operation id: renamed below
        warnings.simplefilter("ignore")
        schema = get_openapi(
            title="llm-gateway", version=_version(), routes=routes,
            description=("OpenAI- and Anthropic-compatible model routes and OhMyGPT-compatible platform routes "
                         "behind one key. Send the key as `Authorization: Bearer sk-...` or `x-api-key: sk-...`. "
                         "Reference: docs/ in the repository."),
        )
    schema["openapi"] = "3.1.0"
    table = _routes_table()
    models: dict[Any, None] = {}
    for spec in table.values():
        for part in ("request", "answer"):
            if isinstance(spec.get(part), type) or hasattr(spec.get(part), "__origin__"):
                models[spec[part]] = None
    for _, model in _ERRORS.values():
        models[model] = None
    from pydantic import TypeAdapter

    keyed, defs = models_json_schema(
        [(m, "validation") for m in models if isinstance(m, type) and issubclass(m, BaseModel)],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {})
    components["schemas"] = {**components.get("schemas", {}), **defs.get("$defs", {})}
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "sk-... (48 characters)"},
        "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    }

    def ref(model: Any) -> dict[str, Any]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return keyed[(model, "validation")]
        return TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")

    paths = schema.setdefault("paths", {})
    for path, operations in paths.items():  # one id per operation (aliases share a function)
        for method, op in operations.items():
            op["operationId"] = method + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_")
    for (method, path), spec in table.items():
        op = paths.get(path, {}).get(method)
        if op is None:
            continue  # a family not built here
        op["summary"] = spec["summary"]
        op.pop("responses", None)
        if not spec.get("public"):
            op["security"] = [{"bearer": []}, {"x-api-key": []}]
        if spec.get("request") is not None:
            content = {_JSON: {"schema": ref(spec["request"])}}
            if spec.get("forms"):
                content.update({media: {"schema": ref(spec["request"])} for media in _FORM})
            op["requestBody"] = {"required": True, "content": content}
        if spec.get("query"):
            op["parameters"] = [p for p in op.get("parameters", []) if p["in"] != "query"] + [
                {"name": name, "in": "query", "required": name in ("q", "taskId"), "schema": {"type": "string"}}
                for name in spec["query"]
            ]
        answer = spec.get("answer")
        ok: dict[str, Any] = {"description": "Success"}
        if answer == _AUDIO:
            ok["content"] = {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}}
        elif answer is not None:
            ok["content"] = {_JSON: {"schema": ref(answer)}}
            if spec.get("stream"):
                ok["content"][_SSE] = {"schema": {"type": "string", "description": (
                    "with `stream: true`: Server-Sent Events in the upstream API's own sequence")}}
        else:
            ok["content"] = {_JSON: {"schema": {"type": "object"}}}
        error_name, _ = _ERRORS[spec["family"]]
        error = {"content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{error_name}"}}}}
        op["responses"] = {"200": ok, **{code: {"description": what, **error} for code, what in _STATUSES.items()}}
    return schema


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("llm-gateway")
    except Exception:  # noqa: BLE001 - a source checkout that was never installed
        return "0"
