"""The management family on Lambda (buffered, Mangum): /api/v1/user/admin/*, usage, model rates."""

from llm_gateway.aws import buffered_handler

handler = buffered_handler(["management"])
