"""The HTTP surface: one router per endpoint family, shared middleware, errors, body parsing and the
typed request shapes. Routers parse and validate; `relay` serves the model calls."""
