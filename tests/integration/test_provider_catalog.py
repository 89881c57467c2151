"""A provider type is described once (gateway.providers.catalog): the settings loader, the adapter
registry, `/health`, `smr doctor` and the fakes all read the same entry. `mistral`, an OpenAI-compatible
service added as one catalog entry and nothing else, proves it: its key and URL variables, its default
host, its adapter and its fake all work without a line elsewhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import msgspec
import openai
import pytest

from gateway.cli.doctor import check_backend
from gateway.fakes.server import ThreadedFakes
from gateway.providers.catalog import PROVIDERS
from gateway.vocab.errors import SettingsError
from gateway.vocab.settings import Backend, load_settings
from tests.helpers import GatewayThread, make_settings

MISTRAL = """
[[backends]]
name = "small"
provider = "mistral"
model = "mistral-small-latest"
"""


def _config(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "config.toml"
    tiers = '[tiers]\nsimple = ["small"]\nmedium = ["small"]\ncomplex = ["small"]\n'
    f.write_text(text + "\n" + tiers + '[routing]\nbaseline = "small"\n[auth]\nenabled = false\n')
    return f


def test_a_new_type_reads_its_own_key_and_url_variables(tmp_path: Path) -> None:
    f = _config(tmp_path, MISTRAL)
    plain = load_settings(f, env={"MISTRAL_API_KEY": "k1"}).backends[0]
    assert plain.api_key == "k1" and plain.base_url is None  # the adapter's default: api.mistral.ai
    moved = load_settings(f, env={"MISTRAL_API_KEY": "k1", "MISTRAL_BASE_URL": "http://10.0.0.9/v1"}).backends[0]
    assert moved.base_url == "http://10.0.0.9/v1"
    # another type's variables are not this one's
    other = load_settings(f, env={"OPENAI_API_KEY": "k2", "OPENAI_BASE_URL": "http://x/v1"}).backends[0]
    assert other.api_key is None and other.base_url is None


def test_gemini_takes_either_of_its_key_variables(tmp_path: Path) -> None:
    f = _config(tmp_path, '[[backends]]\nname = "small"\nprovider = "gemini"\nmodel = "gemini-2.5-flash"\n')
    assert load_settings(f, env={"GEMINI_API_KEY": "g"}).backends[0].api_key == "g"
    assert load_settings(f, env={"GOOGLE_API_KEY": "a", "GEMINI_API_KEY": "b"}).backends[0].api_key == "a"


def test_unknown_type_and_missing_url_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"backends\.small\.provider.*'bedrock'.*known: ollama, gemini"):
        load_settings(_config(tmp_path, MISTRAL.replace("mistral", "bedrock", 1)), env={})
    with pytest.raises(SettingsError, match=r"backends\.small\.base_url.*required for ollama"):
        load_settings(_config(tmp_path, MISTRAL.replace('"mistral"', '"ollama"', 1)), env={})


def test_every_type_has_a_fake_the_demo_can_start() -> None:
    fakes = ThreadedFakes().start_in_thread()
    try:
        for provider in PROVIDERS:
            listing = PROVIDERS[provider].listing
            headers = {"authorization": "Bearer k", "x-goog-api-key": "k"}
            r = httpx.get(fakes.url_for(provider) + listing.path, headers=headers, timeout=5)
            assert r.status_code == 200 and isinstance(r.json()[listing.items], list), provider
    finally:
        fakes.stop_thread()


def test_the_new_type_serves_and_is_checked_like_the_others(fakes: ThreadedFakes) -> None:
    small = Backend(name="small", provider="mistral", model="mistral-small-latest", base_url=fakes.url_for("mistral"),
                    api_key="test-key", input_price=0.1, output_price=0.3)
    settings = make_settings(fakes, extra_backends=[small],
                             tiers={"simple": ["small"], "medium": ["small"], "complex": ["small"]})
    with GatewayThread(settings) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0)
        r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Say hi"}])
        assert r.choices[0].message.content
        health = httpx.get(gw.url + "/health").json()
        assert health["providers"]["small"]["provider"] == "mistral"
        assert health["providers"]["small"]["reachable"] is True

    async def doctor() -> tuple[bool, str]:
        async with httpx.AsyncClient(timeout=5) as client:
            finding = await check_backend(client, msgspec.structs.replace(small, model="fake-model"))
            unlisted = await check_backend(client, small)
            assert unlisted.level == "fail"
            assert unlisted.fix == "check the model name 'mistral-small-latest' on that server"
            keyless = await check_backend(client, Backend(name="k", provider="mistral", model="m"))
        assert keyless.level == "fail" and "MISTRAL_API_KEY" in keyless.detail
        return finding.level == "ok", finding.detail

    ok, detail = asyncio.run(doctor())
    assert ok, detail
