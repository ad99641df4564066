"""The search family on Lambda (buffered, Mangum): GET /api/v1/openapi/search/google-search/v1 and
POST /api/v1/openapi/search/serper/v1."""

from llm_gateway.aws import buffered_handler

handler = buffered_handler(["search"])
