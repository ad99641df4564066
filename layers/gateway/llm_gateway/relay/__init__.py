"""The request pipeline every model call shares: plan → admit → call → reply or stream → settle.

`plans` picks, for a route and the model's upstream wire, a plan (`passthrough` when the client
speaks the upstream's own format, `translated` otherwise); `calls.serve_call` runs any plan through
admission, the provider, and settlement exactly once. Routers in `http/` only parse and validate.
"""
