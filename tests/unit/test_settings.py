from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.vocab.errors import SettingsError
from gateway.vocab.settings import Settings, apply_env, load_settings

ROOT = Path(__file__).resolve().parents[2]


ADMIN = {"SMR_ADMIN_KEY": "admin-secret"}


def test_config_toml_is_the_documented_default() -> None:
    from_file = load_settings(ROOT / "config.toml", env=ADMIN)
    assert msgspec.to_builtins(from_file) == msgspec.to_builtins(apply_env(Settings(), ADMIN))


def test_defaults_follow_the_product() -> None:
    s = load_settings(ROOT / "config.toml", env=ADMIN)
    assert s.tiers.simple[0] == "granite4:350m" and s.backend("granite4:350m").provider == "ollama"  # type: ignore[union-attr]
    assert s.tiers.medium[0] == "gemini-2.5-flash" and s.tiers.complex[0] == "gemini-2.5-pro"
    assert s.routing.baseline == "gemini-2.5-pro"


def test_env_overrides_secrets_and_urls() -> None:
    s = load_settings(ROOT / "config.toml", env={
        "GOOGLE_API_KEY": "g-key", "OLLAMA_BASE_URL": "http://ollama:11434", "DATABASE_URL": "postgresql://db/x",
        "REDIS_URL": "redis://r:6379", "SMR_ADMIN_KEY": "adm", "SMR_PORT": "9000"})
    assert s.backend("gemini-2.5-pro").api_key == "g-key"  # type: ignore[union-attr]
    assert s.backend("granite4:350m").base_url == "http://ollama:11434"  # type: ignore[union-attr]
    assert s.database.url == "postgresql://db/x" and s.redis.url == "redis://r:6379"
    assert s.auth.admin_key == "adm" and s.server.port == 9000


def test_smr_config_env_picks_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[server]\nport = 9123\n')
    assert load_settings(env={"SMR_CONFIG": str(f), **ADMIN}).server.port == 9123


@pytest.mark.parametrize(("text", "needle"), [
    ('[server]\nport = "eighty"\n', "setting 'server.port'"),
    ('[routing]\ncutoffs = [0.9, 0.1]\n', "routing.cutoffs"),
    ('[tiers]\nsimple = ["nope"]\n', "tiers.simple"),
    ('[routing]\nbaseline = "ghost"\n', "routing.baseline"),
    ('[server]\nprot = 1\n', "prot"),
    ('[[backends]]\nname = "x"\nprovider = "azure"\nmodel = "m"\n', "backends"),
    ('[auth]\nenabled = true\n', "SMR_ADMIN_KEY"),
    ('[auth]\nenabled = false\n[log]\nbatch_size = 0\n', "setting 'log'"),
    ('[auth]\nenabled = false\n[cache]\nembedding_batch_window_s = -1\n', "embedding_batch_window_s"),
    ('[cache]\nembedding_backend = "tensorrt"\n', "cache.embedding_backend"),
    ('[auth]\nenabled = false\n[log]\nspill_after_s = 0\n', "spill_after_s > 0"),
    ('[auth]\nenabled = false\n[learning]\njudge = "ghost"\n', "learning.judge"),
    ('[auth]\nenabled = false\n[cache]\nmax_wrong_hit_rate = 0\n', "max_wrong_hit_rate"),
    ('[auth]\nenabled = false\n[cache]\nmax_wrong_hit_rate = 1.0\n', "max_wrong_hit_rate"),
    ('[auth]\nenabled = false\n[cache]\nprefilter_similarity = 1.5\n', "cache.prefilter_similarity"),
    ('[auth]\nenabled = false\n[limits]\nhold_margin_s = -1\n', "limits.hold_margin_s"),
    ('[auth]\nenabled = false\n[limits]\nredis_timeout_s = 0\n', "limits.redis_timeout_s"),
    ('not toml at all [', "invalid TOML"),
])
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(f, env={})
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "none.toml", env={})


def test_a_budget_hold_lapses_the_configured_margin_after_its_chains_time_limits(tmp_path: Path) -> None:
    from gateway.vocab.limits import hold_ttl_s

    f = tmp_path / "c.toml"
    f.write_text('[auth]\nenabled = false\n[limits]\nhold_margin_s = 1.5\n')
    settings = load_settings(f, env={})
    chain = tuple(settings.backends[:2])
    limits = sum(b.timeouts.total_s for b in chain)
    assert hold_ttl_s(chain, settings.limits.hold_margin_s) == pytest.approx(limits + 1.5)
    assert hold_ttl_s(chain, Settings().limits.hold_margin_s) == pytest.approx(limits + 10.0)  # the default
