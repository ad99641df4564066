"""The chat family on Lambda (streaming): POST /v1/chat/completions, /v1/completions, /v1/claude/web/completion,
and the Responses API (/v1/responses and its GET, DELETE and input_items)."""

from llm_gateway.aws import family_app


def app():
    return family_app(["chat"])
