"""Smart Model Router: an OpenAI-compatible gateway that routes each prompt to the cheapest model
that can answer it."""

__version__ = "0.1.0"
