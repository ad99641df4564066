"""Task webhooks on AWS (tasks.webhooks): the FIFO queue's messages, each one delivery, in order per task."""

from llm_gateway.tasks.webhooks import lambda_handler as handler  # noqa: F401 - the Lambda entry
