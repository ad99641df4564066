"""The HTTP surface: one router per endpoint family, shared middleware, errors and body parsing."""
