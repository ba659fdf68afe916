"""Settings: defaults, file, environment, overrides, and refusals that say why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netbroker.common.config import Settings, describe_settings, load_settings
from netbroker.common.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "netbroker.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.database.url == "sqlite:///netbroker.db"
    assert settings.service.port == 25080
    assert settings.clouds.min_mbytes_per_s_from_tier1 == 5.0


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[service]\nport = 8000\nworkers = 2\n'
                           '[clouds]\nmin_mbytes_per_s_from_tier1 = 8\n')
    env = {"NETBROKER_SERVICE_PORT": "9000", "NETBROKER_DATABASE_URL": "sqlite:///x.db"}
    settings = load_settings(path, environ=env, overrides={"service.workers": 4})
    assert settings.service.port == 9000  # env beats file
    assert settings.service.workers == 4  # override beats file
    assert settings.clouds.min_mbytes_per_s_from_tier1 == 8.0
    assert settings.database.url == "sqlite:///x.db"


def test_config_path_comes_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[service]\nport = 8123\n")
    assert load_settings(environ={"NETBROKER_CONFIG": str(path)}).service.port == 8123


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.service.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("[clouds]\nmin_mbytes_per_s_from_tier1 = -5\n", {},
     r"clouds\.min_mbytes_per_s_from_tier1 = -5: Input should be greater than 0 "
     r"\(from file .*netbroker\.toml\)"),
    ("[clouds]\nmax_packet_loss_fraction = 1.5\n", {},
     r"clouds\.max_packet_loss_fraction = 1\.5: Input should be less than or equal to 1"),
    ("[service]\nport = 'eighty'\n", {},
     r"service\.port = 'eighty': Input should be a valid integer"),
    ("", {"NETBROKER_SERVICE_PORT": "70000"},
     r"service\.port = '70000': .*less than or equal to 65535 \(from env NETBROKER_SERVICE_PORT\)"),
    ("[database]\nurl = 'mysql://x'\n", {},
     r"database\.url = 'mysql://x': Value error, must start with sqlite:"),
    ("[clouds]\nmin_mbps = 5\n", {}, r"clouds\.min_mbps: unknown setting"),
    ("[cloudz]\nx = 1\n", {}, r"cloudz: unknown setting"),
    ("[service\nport = 1\n", {}, r"not valid TOML"),
])
def test_invalid_settings_are_refused_with_key_value_and_why(
        tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=env)
    assert re.search(expected, str(info.value)), str(info.value)


def test_every_bad_value_is_listed(tmp_path: Path) -> None:
    path = write(tmp_path, "[service]\nport = 0\nworkers = 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert [p.split(" =")[0] for p in info.value.problems] == ["service.port", "service.workers"]


def test_a_named_file_that_is_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


# Counts and switches need no unit; every other number says its unit in its name.
UNITLESS = {"database.pool_size", "service.port", "service.workers", "clouds.min_samples",
            "clouds.stale_cycles", "metrics.min_samples", "collectors.http_retries",
            "dispatcher.event_range_max_attempts", "dispatcher.max_form_fields",
            "rebrokerage.max_rebrokerages",
            "brokerage.seed",
            # Score weights are dimensionless; penalties and caps are in priority points.
            "brokerage.weight_data", "brokerage.weight_capacity", "brokerage.weight_network",
            "priority.fairshare_penalty", "priority.fairshare_max_penalty", "priority.aging_cap",
            "priority.failure_penalty", "pd2p.min_waiting_jobs", "pd2p.max_replicas",
            "pd2p.weight_network", "pd2p.weight_capacity", "pd2p.weight_tier"}
UNIT_SUFFIXES = ("_ms", "_s", "_minutes", "_days", "_mb", "_bytes", "_fraction",
                 "_mbytes_per_s_from_tier1", "_mbytes_per_s", "_per_hour", "_per_day",
                 "_per_slot", "_per_week", "_hours", "_messages")


def test_every_setting_is_documented_and_numbers_carry_units() -> None:
    rows = describe_settings()
    assert len(rows) == sum(len(type(g).model_fields) for g in Settings().__dict__.values())
    for row in rows:
        assert row["description"], f"{row['key']} has no description"
        if row["type"] in ("int", "float") and row["key"] not in UNITLESS:
            assert row["key"].endswith(UNIT_SUFFIXES), f"{row['key']} has no unit in its name"
