"""Every provider type, described once: where its adapter and its wire-faithful fake live, which
environment variables carry its key and URL, its default address, and how `smr doctor` lists its
models. The settings loader, `/health`, `smr doctor`, the adapter registry and the demo all read this
table; nothing else names a provider type.

Adding a provider type is its adapter (`gateway/providers/<x>.py`), one entry here and, for a wire no
existing fake speaks, its fake (`gateway/fakes/<x>_fake.py`). An OpenAI-compatible service is an entry
alone (see `mistral`). This module imports nothing heavy: adapters and fakes are imported by name, only
when a backend of their type is configured, so google-genai is loaded only for a Gemini backend.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec


class ModelListing(msgspec.Struct, frozen=True):
    """How to ask a server of this type which models it serves (`smr doctor`)."""

    path: str  # appended to the base URL
    auth: Literal["bearer", "x-goog-api-key", "none"]
    items: str  # the JSON field holding the list
    name: str  # each item's field holding the model's name
    query: dict[str, str] = {}


class ProviderSpec(msgspec.Struct, frozen=True):
    adapter: str  # "module:Class", the Provider built for each backend of this type
    fake: str  # "module:Class", the wire-faithful fake that stands in for it (tests, `smr demo`)
    url_env: str  # overrides the base URL of every backend of this type
    listing: ModelListing
    missing_model_fix: str  # what `smr doctor` suggests when the model is not listed; {model} is filled in
    key_env: tuple[str, ...] = ()  # the first one set carries the API key, unless a backend names its own
    default_base_url: str | None = None  # None: every backend of this type must give base_url
    fake_path: str = ""  # appended to a fake's address to make the base URL the adapter expects


_OPENAI_LISTING = ModelListing("/models", "bearer", "data", "id")

PROVIDERS: dict[str, ProviderSpec] = {
    "ollama": ProviderSpec(
        adapter="gateway.providers.ollama:OllamaProvider", fake="gateway.fakes.ollama_fake:FakeOllama",
        url_env="OLLAMA_BASE_URL", listing=ModelListing("/api/tags", "none", "models", "name"),
        missing_model_fix="ollama pull {model}"),
    "gemini": ProviderSpec(
        adapter="gateway.providers.gemini:GeminiProvider", fake="gateway.fakes.gemini_fake:FakeGemini",
        url_env="GEMINI_BASE_URL", key_env=("GOOGLE_API_KEY", "GEMINI_API_KEY"),
        default_base_url="https://generativelanguage.googleapis.com",
        listing=ModelListing("/v1beta/models", "x-goog-api-key", "models", "name", {"pageSize": "1000"}),
        missing_model_fix="check the model name {model!r} and that the key may use it"),
    "openai": ProviderSpec(
        adapter="gateway.providers.openai_compat:OpenAICompatProvider", fake="gateway.fakes.openai_fake:FakeOpenAI",
        url_env="OPENAI_BASE_URL", key_env=("OPENAI_API_KEY",), default_base_url="https://api.openai.com/v1",
        listing=_OPENAI_LISTING, fake_path="/v1", missing_model_fix="check the model name {model!r} on that server"),
    # An OpenAI-compatible service with its own key, URL and default host: an entry, no code.
    "mistral": ProviderSpec(
        adapter="gateway.providers.openai_compat:OpenAICompatProvider", fake="gateway.fakes.openai_fake:FakeOpenAI",
        url_env="MISTRAL_BASE_URL", key_env=("MISTRAL_API_KEY",), default_base_url="https://api.mistral.ai/v1",
        listing=_OPENAI_LISTING, fake_path="/v1", missing_model_fix="check the model name {model!r} on that server"),
}


def spec(provider: str) -> ProviderSpec:
    """The description of a provider type (the settings loader has refused unknown ones)."""
    return PROVIDERS[provider]


def load(dotted: str) -> Any:
    """The class named "module:Class"."""
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def default_address(provider: str) -> tuple[str, int]:
    """Host and port a backend of this type talks to when it gives no base_url (what `/health` probes)."""
    url = spec(provider).default_base_url
    if not url:
        return "localhost", 80
    u = urlsplit(url)
    return u.hostname or "localhost", u.port or (443 if u.scheme == "https" else 80)
