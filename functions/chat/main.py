"""The chat family on Lambda (streaming): POST /v1/chat/completions, /v1/completions, /v1/claude/web/completion."""

from llm_gateway.aws import family_app


def app():
    return family_app(["chat"])
