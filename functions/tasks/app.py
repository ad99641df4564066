"""The tasks family on Lambda (buffered, Mangum): /api/v1/ai/draw/mj/*, the upstream's callback and
the public stored files; its schedule sweeps the tasks whose upstream went silent."""

from llm_gateway.aws import buffered_handler
from llm_gateway.tasks.service import scheduled

handler = scheduled(buffered_handler(["tasks"]))
