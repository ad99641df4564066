"""Typed models of the requests each mirrored API takes, with that API's own field types.

A body is checked against its model before anything else looks at it, so the code after it (token
counting, translation, admission) only ever meets the shapes it was written for, and a malformed
field is a 400 naming it instead of a crash deep inside. The models check; they do not rewrite:
the client's dict is what travels on, unknown fields included, because a passthrough forwards
every field the client sent (API.md 3.1).

JSON bodies are checked strictly (`"10"` is not an integer, as upstream); form bodies arrive as text
and are converted by the route before the same check. Where a field may take several JSON types, a
discriminator picks the alternative by the value's own type (or its `type` tag), so an error names
the field itself — `messages[0].content` — not the alternative pydantic tried.

`check` turns the first error into a GatewayError in the caller family's words: OpenAI's
(`Invalid value for 'messages[0].role': ...`, `param` set) or Anthropic's (`messages.0.role: ...`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from ..errors import GatewayError

__all__ = [
    "ChatRequest",
    "CompletionsRequest",
    "MessagesRequest",
    "CountTokensRequest",
    "CompleteRequest",
    "EmbeddingsRequest",
    "ImagesRequest",
    "SpeechRequest",
    "check",
]

# Tags of the alternatives a discriminator picks; the `~` keeps them apart from field names when an
# error's location is turned into the client's field path.
_TAG = "~"
_JSON_TYPES: dict[str, Any] = {
    "string": str, "array": list, "object": dict, "integer": int, "number": (int, float), "boolean": bool,
}


class _Shape(BaseModel):
    """Unknown fields are allowed (and forwarded by the routes); known ones have their API's type."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, defer_build=True)


def one_of(message: str, **alternatives: Any) -> Any:
    """A field of several JSON types: the value's own type picks the alternative, else `message`."""

    def pick(value: Any) -> str | None:
        for name in alternatives:
            kinds = _JSON_TYPES[name]
            if isinstance(value, kinds) and not (isinstance(value, bool) and name in ("integer", "number")):
                return _TAG + name
        return None

    members = tuple(Annotated[kind, Tag(_TAG + name)] for name, kind in alternatives.items())
    # a Union built from a tuple at run time: `X | Y` cannot spell it
    return Annotated[Union[members], Discriminator(pick, custom_error_type="type",  # noqa: UP007
                                                   custom_error_message=message)]


_TAGGED: set[str] = set()  # the error types of `tagged` fields


def tagged(kind: str, **variants: Any) -> Any:
    """An object whose `type` names its shape; an unknown `type` is refused naming it."""
    _TAGGED.add(f"{kind}_type")

    def pick(value: Any) -> str | None:
        if isinstance(value, dict):
            tag = value.get("type")
            return _TAG + tag if isinstance(tag, str) and tag in variants else None
        return None

    members = tuple(Annotated[shape, Tag(_TAG + name)] for name, shape in variants.items())
    expected = ", ".join(f"'{name}'" for name in variants)
    return Annotated[
        Union[members],  # noqa: UP007
        Discriminator(pick, custom_error_type=f"{kind}_type",
                      custom_error_message=f"Input should be an object whose 'type' is one of {expected}"),
    ]


if TYPE_CHECKING:  # the unions below are built at run time; to a type checker they are any value
    ChatPart = Any
    ChatContent = Any
    Stop = Any
    ToolChoice = Any
    PromptItem = Any
    Prompt = Any
    ResultContent = Any
    Block = Any
    MessageContent = Any
    SystemPrompt = Any
    EmbeddingInput = Any
    ResponseInput = Any

PositiveInt = Annotated[int, Field(ge=1)]
Name = Annotated[str, Field(min_length=1)]

# --------------------------------------------------------------------------------------------------
# OpenAI Chat Completions


class _ImageURL(_Shape):
    url: str
    detail: str | None = None


class _TextPart(_Shape):
    type: Literal["text"]
    text: str


class _ImagePart(_Shape):
    type: Literal["image_url"]
    image_url: _ImageURL


class _AudioData(_Shape):
    data: str
    format: str


class _AudioPart(_Shape):
    type: Literal["input_audio"]
    input_audio: _AudioData


class _FilePart(_Shape):
    type: Literal["file"]
    file: dict[str, Any]


class _RefusalPart(_Shape):
    type: Literal["refusal"]
    refusal: str


if not TYPE_CHECKING:
    ChatPart = tagged(
        "content_part", text=_TextPart, image_url=_ImagePart, input_audio=_AudioPart, file=_FilePart,
        refusal=_RefusalPart,
    )
if not TYPE_CHECKING:
    ChatContent = one_of("Input should be a string or an array of content parts", string=str, array=list[ChatPart])


class _FunctionCall(_Shape):
    name: str
    arguments: str


class _ToolCall(_Shape):
    id: str | None = None
    type: str | None = None
    function: _FunctionCall | None = None
    custom: dict[str, Any] | None = None


class _ChatMessage(_Shape):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: ChatContent | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: _FunctionCall | None = None
    refusal: str | None = None


class _FunctionDefinition(_Shape):
    name: Name
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _ChatTool(_Shape):
    type: str
    function: _FunctionDefinition | None = None


class _StreamOptions(_Shape):
    include_usage: bool | None = None


class _ResponseFormat(_Shape):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


if not TYPE_CHECKING:
    Stop = one_of("Input should be a string or an array of strings", string=str, array=list[str])
if not TYPE_CHECKING:
    ToolChoice = one_of("Input should be a string or an object", string=str, object=dict)


class ChatRequest(_Shape):
    model: Name
    messages: Annotated[list[_ChatMessage], Field(min_length=1)]
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: Stop | None = None
    tools: list[_ChatTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: _ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    metadata: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------------
# OpenAI legacy completions

if not TYPE_CHECKING:
    PromptItem = one_of("Input should be a string, a token id or an array of token ids",
                        string=str, integer=int, array=list[int])
if not TYPE_CHECKING:
    Prompt = one_of(
        "Input should be a string, an array of strings or an array of token ids", string=str, array=list[PromptItem],
    )


if not TYPE_CHECKING:
    EmbeddingInput = one_of(
        "Input should be a string, an array of strings, an array of token ids or an array of arrays of them",
        string=str, array=list[PromptItem],
    )


class CompletionsRequest(_Shape):
    model: Name
    prompt: Prompt
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: Stop | None = None
    echo: bool | None = None
    logprobs: int | None = None
    suffix: str | None = None
    user: str | None = None


# --------------------------------------------------------------------------------------------------
# OpenAI embeddings, images, speech


class EmbeddingsRequest(_Shape):
    model: Name
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: PositiveInt | None = None
    user: str | None = None


class ImagesRequest(_Shape):
    model: Name
    prompt: Annotated[str, Field(min_length=1, max_length=32_000)]
    n: Annotated[int, Field(ge=1, le=10)] | None = None
    size: str | None = None
    quality: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    style: str | None = None
    background: str | None = None
    output_format: str | None = None
    user: str | None = None


class SpeechRequest(_Shape):
    model: Name
    input: Annotated[str, Field(min_length=1, max_length=4096)]
    voice: Name
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | None = None
    speed: Annotated[float, Field(ge=0.25, le=4.0)] | None = None
    instructions: str | None = None


# --------------------------------------------------------------------------------------------------
# Anthropic Messages


class _TextBlock(_Shape):
    type: Literal["text"]
    text: str


class _SourceBlock(_Shape):  # image, document
    type: str
    source: dict[str, Any]


class _ToolUseBlock(_Shape):
    type: str  # tool_use, server_tool_use, mcp_tool_use
    id: str
    name: str
    input: dict[str, Any]


class _ThinkingBlock(_Shape):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class _RedactedThinkingBlock(_Shape):
    type: Literal["redacted_thinking"]
    data: str


class _OpaqueBlock(_Shape):
    """Blocks only Anthropic's own tools produce or read; forwarded as sent."""

    type: str


# The content a tool result holds: text, images, documents, search results.
_ResultBlock = tagged(
    "content_block", text=_TextBlock, image=_SourceBlock, document=_SourceBlock, search_result=_OpaqueBlock,
)
if not TYPE_CHECKING:
    ResultContent = one_of(
        "Input should be a string or an array of content blocks", string=str, array=list[_ResultBlock]
    )


class _ToolResultBlock(_Shape):
    type: Literal["tool_result"]
    tool_use_id: str
    content: ResultContent | None = None
    is_error: bool | None = None


if not TYPE_CHECKING:
    Block = tagged(
        "content_block",
        text=_TextBlock,
        image=_SourceBlock,
        document=_SourceBlock,
        search_result=_OpaqueBlock,
        tool_use=_ToolUseBlock,
        tool_result=_ToolResultBlock,
        thinking=_ThinkingBlock,
        redacted_thinking=_RedactedThinkingBlock,
        server_tool_use=_ToolUseBlock,
        mcp_tool_use=_ToolUseBlock,
        mcp_tool_result=_OpaqueBlock,
        web_search_tool_result=_OpaqueBlock,
        web_fetch_tool_result=_OpaqueBlock,
        code_execution_tool_result=_OpaqueBlock,
        bash_code_execution_tool_result=_OpaqueBlock,
        text_editor_code_execution_tool_result=_OpaqueBlock,
        container_upload=_OpaqueBlock,
    )


if not TYPE_CHECKING:
    MessageContent = one_of("Input should be a string or an array of content blocks", string=str, array=list[Block])
if not TYPE_CHECKING:
    SystemPrompt = one_of("Input should be a string or an array of text blocks", string=str, array=list[_TextBlock])


class _Message(_Shape):
    role: Literal["user", "assistant"]
    content: MessageContent


class _Tool(_Shape):
    name: Name
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class _Thinking(_Shape):
    type: Literal["enabled", "disabled"]
    budget_tokens: PositiveInt | None = None


class CountTokensRequest(_Shape):
    model: Name
    messages: Annotated[list[_Message], Field(min_length=1)]
    system: SystemPrompt | None = None
    tools: list[_Tool] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: _Thinking | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: PositiveInt
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: dict[str, Any] | None = None


class CompleteRequest(_Shape):
    """Anthropic's legacy Text Completions."""

    model: Name
    prompt: str
    max_tokens_to_sample: PositiveInt
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------------
# errors in the caller's words


if not TYPE_CHECKING:
    ResponseInput = one_of("Input should be a string or an array of input items", string=str, array=list)


class ResponsesRequest(_Shape):
    """OpenAI Responses (API.md 3.8): what the gateway itself reads; the rest is the model's business."""

    model: Name
    input: ResponseInput | None = None
    instructions: str | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: Name | None = None
    max_output_tokens: PositiveInt | None = None
    tools: list[dict[str, Any]] | None = None


def check(shape: type[BaseModel], body: dict[str, Any], *, anthropic: bool = False) -> None:
    """400 naming the first field of `body` that `shape` refuses."""
    try:
        shape.__pydantic_validator__.validate_python(body)
    except ValidationError as exc:
        raise _refusal(exc.errors(include_url=False, include_context=False)[0], anthropic) from None


# pydantic's words for a wrong type, in JSON's
_TYPE_WORDS = {
    "string_type": "Input should be a string",
    "int_type": "Input should be an integer",
    "int_from_float": "Input should be an integer",
    "float_type": "Input should be a number",
    "bool_type": "Input should be a boolean",
    "dict_type": "Input should be an object",
    "model_type": "Input should be an object",
    "model_attributes_type": "Input should be an object",
    "list_type": "Input should be an array",
    "finite_number": "Input should be a finite number",
}


def _refusal(error: Any, anthropic: bool) -> GatewayError:
    path = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith(_TAG))]
    kind = error["type"]
    message = _TYPE_WORDS.get(kind) or error["msg"]
    found = error.get("input")
    if kind in _TAGGED and isinstance(found, dict) and found.get("type") is not None:
        message = f"Unknown {kind[:-5].replace('_', ' ')} type {found['type']!r}: {message[0].lower()}{message[1:]}"
    dotted = ".".join(str(p) for p in path)
    if anthropic:
        return GatewayError("invalid_request", f"{dotted}: {message}", param=dotted or None)
    param = "".join(f"[{p}]" if isinstance(p, int) else ("." if i else "") + p for i, p in enumerate(path))
    if kind == "missing":
        return GatewayError("invalid_request", f"Missing required parameter: '{param}'.", param=param)
    return GatewayError("invalid_request", f"Invalid value for '{param}': {message}.", param=param)

