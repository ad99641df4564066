"""The messages family on Lambda (streaming): POST /v1/messages, /v1/messages/count_tokens, /v1/complete."""

from llm_gateway.aws import family_app


def app():
    return family_app(["messages"])
