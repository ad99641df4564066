"""Prices, cost, usage accounting and settlement: the only place money is computed.

- `usage`: what a call used, in every unit (tokens, images, characters, calls);
- `cost`: the one rule that turns usage into money, with one rounding;
- `reservation`: the ticket admission makes (persistable, settled later by another process);
- `settle`: the charge of a ticket, written exactly once (the request id is the guard);
- `retry`: where a settlement the store refused goes (SQS on AWS, else the store itself), and the
  draining that applies it later.
"""
