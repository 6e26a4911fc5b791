from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest

from veobatch import settings_types as read
from veobatch.catalog import DEFAULT_MODELS, ImageRange, parse_models
from veobatch.cli import cli
from veobatch.errors import ConfigError
from veobatch.settings import (
    DEFAULT_DATABASE_URL,
    SETTING_ENV_NAMES,
    SETTINGS,
    Rate,
    Settings,
    _declared,
    setting,
)


def test_defaults_need_nothing() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.redis_url is None
    assert settings.rate is None
    assert settings.models == DEFAULT_MODELS


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
    ],
)
def test_database_urls_are_normalized(given: str, expected: str) -> None:
    assert Settings.from_env({"VEO_DATABASE_URL": given}).database_url == expected


def test_unsupported_database_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="VEO_DATABASE_URL: unsupported URL 'mysql'"):
        Settings.from_env({"VEO_DATABASE_URL": "mysql://root@localhost/x"})


@pytest.mark.parametrize(
    ("text", "per_second", "burst"),
    [
        ("10/min", 10 / 60, 1),
        ("2/s", 2.0, 1),
        ("2/sec", 2.0, 1),
        ("100/h", 100 / 3600, 1),
        ("20 / 1s", 20.0, 1),
        ("19/10s", 1.9, 1),
        ("2/s,burst=4", 2.0, 4),
        ("30/minutes", 0.5, 1),
    ],
)
def test_rates(text: str, per_second: float, burst: int) -> None:
    rate = Rate.parse(text)
    assert rate.per_second == pytest.approx(per_second)
    assert rate.burst == burst


@pytest.mark.parametrize("text", ["fast", "10", "0/s", "10/fortnight", "2/s,burst=x", "-1/s"])
def test_bad_rates_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigError, match=r"VEO_RATE: .* write COUNT/UNIT"):
        Rate.parse(text)


def test_api_key_never_shows_itself() -> None:
    settings = Settings.from_env({"VEO_API_KEY": "sk-secret-value-123"})
    assert settings.api_key is not None
    assert settings.api_key.reveal() == "sk-secret-value-123"
    assert "sk-secret" not in repr(settings)
    assert "sk-secret" not in str(settings.api_key)


def test_no_secret_shows_itself() -> None:
    secrets = {"api_tokens": "tok-" + "a" * 16, "api_read_tokens": "tok-" + "b" * 16}
    settings = Settings.from_values({**secrets, "webhook_secret": "tok-hook"})
    assert "tok-" not in repr(settings)
    assert [token.reveal() for token in settings.api_tokens] == [secrets["api_tokens"]]


def test_every_setting_is_declared_with_help_and_a_variable() -> None:
    assert [spec.name for spec in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]
    options = {param.name: param for param in cli.params if isinstance(param, click.Option)}
    for spec in SETTINGS:
        assert spec.help.strip(), spec.name
        assert re.fullmatch(r"VEO_[A-Z0-9_]+", spec.env), spec.name
        assert spec.env == f"VEO_{spec.name.upper()}"
        assert options[spec.name].envvar == spec.env
        assert options[spec.name].help == spec.help
    assert {spec.env for spec in SETTINGS} == SETTING_ENV_NAMES


def test_a_setting_cannot_be_declared_without_help_or_declaration() -> None:
    with pytest.raises(ValueError, match="help"):
        setting(1.0, read.seconds, "  ")

    @dataclasses.dataclass
    class Undeclared:
        plain: int = 1

    with pytest.raises(TypeError, match=r"\.plain is not declared with setting"):
        _declared(dataclasses.fields(Undeclared))


def test_settings_made_directly_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEO_READ_TIMEOUT", "never")  # modules take constants from Settings()
    monkeypatch.setenv("VEO_RATE", "2/s")
    assert Settings() == Settings.from_env({})
    assert Settings(read_timeout=5.0).read_timeout == 5.0


def test_blank_means_the_default() -> None:
    settings = Settings.from_env({"VEO_READ_TIMEOUT": "  ", "VEO_CURRENCY": ""})
    assert (settings.read_timeout, settings.currency) == (60.0, "USD")
    assert Settings.from_values({"read_timeout": " 5 "}).read_timeout == 5.0


def test_api_base_must_be_http() -> None:
    assert Settings.from_env({"VEO_API_BASE": "https://relay.example/"}).api_base == (
        "https://relay.example"
    )
    with pytest.raises(ConfigError, match="VEO_API_BASE"):
        Settings.from_env({"VEO_API_BASE": "relay.example"})


def test_model_table_can_be_extended_and_overridden() -> None:
    table = parse_models("veo4-frames=1-3, veo3.1=1")
    assert table["veo4-frames"] == ImageRange(1, 3)
    assert table["veo3.1"] == ImageRange(1, 1)
    assert table["veo3-pro-frames"] == DEFAULT_MODELS["veo3-pro-frames"]


@pytest.mark.parametrize("text", ["veo4", "veo4=", "veo4=3-1", "veo4=0", "=1-2"])
def test_bad_model_table(text: str) -> None:
    with pytest.raises(ConfigError, match="VEO_MODELS"):
        parse_models(text)


def test_polling_and_download_settings() -> None:
    settings = Settings.from_values(
        {
            "poll_interval": "2-60",
            "poll_delay": "30",
            "poll_deadline": "600",
            "poll_rate": "1/s",
            "max_in_flight": "20",
            "download_dir": "videos",
        }
    )
    assert settings.poll_interval == (2.0, 60.0)
    assert (settings.poll_delay, settings.poll_deadline) == (30.0, 600.0)
    assert settings.poll_rate == Rate(1.0, 1.0)
    assert (settings.max_in_flight, settings.download_dir) == (20, "videos")
    assert Settings.from_values({"poll_interval": "10"}).poll_interval == (10.0, 10.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("poll_interval", "30-5", "VEO_POLL_INTERVAL: '30-5' is not MIN-MAX seconds"),
        ("poll_interval", "soon", "VEO_POLL_INTERVAL: 'soon' is not MIN-MAX seconds"),
        ("max_in_flight", "0", "VEO_MAX_IN_FLIGHT: '0' is not a whole number above 0"),
        ("max_in_flight", "ten", "VEO_MAX_IN_FLIGHT: 'ten' is not a whole number above 0"),
        ("max_in_flight", "²", "VEO_MAX_IN_FLIGHT: '²' is not a whole number above 0"),
        ("poll_deadline", "-5", "VEO_POLL_DEADLINE: '-5' is not a number of seconds above 0"),
        ("poll_rate", "often", "VEO_POLL_RATE: 'often' is not a rate"),
    ],
)
def test_bad_polling_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_values({name: value})


def test_the_readme_lists_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    assert {spec.env for spec in SETTINGS} <= set(re.findall(r"`(VEO_[A-Z0-9_]+)`", table))


def test_a_flag_is_true_or_false() -> None:
    assert Settings.from_values({"webhook_allow_private": "TRUE"}).webhook_allow_private
    assert not Settings.from_values({"webhook_allow_private": "no"}).webhook_allow_private
    assert not Settings.from_values({}).webhook_allow_private
    with pytest.raises(ConfigError, match="VEO_WEBHOOK_ALLOW_PRIVATE: 'maybe' is not true"):
        Settings.from_values({"webhook_allow_private": "maybe"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("image_mode", "inline", "VEO_IMAGE_MODE: 'inline' is not one of data-uri, base64, url"),
        ("image_oversize", "crop", "VEO_IMAGE_OVERSIZE: 'crop' is not one of shrink, refuse"),
        ("image_max_mb", "0", "VEO_IMAGE_MAX_MB: '0' is not a size in MB above 0 and at most 20"),
        ("image_max_mb", "50", "VEO_IMAGE_MAX_MB: '50' is not a size in MB"),
        ("s3_url", "my-bucket", "VEO_S3_URL: 'my-bucket' is not s3://BUCKET/PREFIX"),
        ("s3_url", "s3://A_B/x", "VEO_S3_URL: 's3://A_B/x' is not s3://BUCKET/PREFIX"),
        ("s3_endpoint", "minio:9000", "VEO_S3_ENDPOINT: 'minio:9000' must start with http://"),
    ],
)
def test_bad_image_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_values({name: value})


def test_image_settings_are_read() -> None:
    settings = Settings.from_values(
        {"image_mode": "URL", "image_max_mb": "2.5", "s3_url": "s3://photos/veo/"}
    )
    assert (settings.image_mode, settings.image_max_mb, settings.s3_url) == (
        "url",
        2.5,
        "s3://photos/veo/",
    )
    assert Settings().image_mode == "data-uri"
