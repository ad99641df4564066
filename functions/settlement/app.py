"""Settlements that could not be written at request time, applied later (billing.retry): the SQS
queue's messages, and on a schedule whatever was parked in the store."""

from llm_gateway.billing.retry import lambda_handler as handler  # noqa: F401 - the Lambda entry
