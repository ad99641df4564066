"""llm-gateway: one key and one balance for many LLM providers.

The package is shared by every Lambda function and by `llm-gateway serve`. Each room has one job,
and data flows one way, router → admission → provider (translated at the edges) → billing:

    http/        routers per endpoint family, request parsing and typed request shapes, error
                 envelopes, the request context and log line
    relay/       the pipeline every model call shares: plan (by route and wire) → admit → call →
                 reply or stream → settle
    admission/   keys, permissions, the input and output limits, rate limits, the funds gate
    billing/     reservations, cost in units with one rounding rule, settlement exactly once
    catalog/     models (default file + store overrides), prices, tiers, each model's wire format
    providers/   one adapter per upstream behind one protocol and a registry; operations → wire
    translate/   pure mappings between wire formats, requests, answers and stream events
    store/       the Store protocol and its SQLite and DynamoDB adapters
    accounts.py  users, keys and money as the CLI and the platform routes change them, range-checked
    cli.py       the operator command

A provider knows nothing of keys or money, the store nothing of HTTP, translate nothing but dicts.
Importing this package imports nothing heavy.
"""

__version__ = "0.1.0"
