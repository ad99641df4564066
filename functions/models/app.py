"""The models family on Lambda (buffered, Mangum): GET /v1/models, GET /v1/models/{model}, GET /healthz."""

from llm_gateway.aws import buffered_handler

handler = buffered_handler(["models"])
