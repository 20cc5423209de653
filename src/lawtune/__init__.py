"""lawtune: turn an open LLM into a Chinese legal assistant — prepare, train, eval, serve."""

__version__ = "0.1.0"
