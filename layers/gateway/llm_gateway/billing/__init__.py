"""Prices, cost, usage accounting and settlement: the only place money is computed."""
