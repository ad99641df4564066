"""llm-gateway: one key and one balance for many LLM providers.

The package is shared by every Lambda function and by `llm-gateway serve`; each room (sub-package)
has one job, see ARCHITECTURE.md. Importing this package imports nothing heavy.
"""

__version__ = "0.1.0"
