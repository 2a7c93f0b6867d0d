"""Settings: defaults from INTERFACES.md, clear messages for wrong values."""

import pytest

from bot.errors import SettingsError
from bot.settings import ROOT, load_settings


def test_defaults_match_the_interfaces() -> None:
    settings = load_settings({})
    assert settings.database_url == f"sqlite:///{ROOT / 'var' / 'lotse.db'}"
    assert settings.engine_url == "http://localhost:5005"
    assert (settings.app_port, settings.engine_port) == (8000, 5005)
    assert settings.translator == "none"
    assert not settings.telegram_enabled


def test_engine_url_follows_engine_port() -> None:
    assert load_settings({"ENGINE_PORT": "5999"}).engine_url == "http://localhost:5999"


def test_plain_postgresql_url_uses_psycopg() -> None:
    settings = load_settings({"LOTSE_DATABASE_URL": "postgresql://u@db/lotse"})
    assert settings.database_url == "postgresql+psycopg://u@db/lotse"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"APP_PORT": "eighty"}, "APP_PORT"),
        ({"ENGINE_PORT": "70000"}, "ENGINE_PORT"),
        ({"LOTSE_DATABASE_URL": "mysql://x"}, "LOTSE_DATABASE_URL"),
        ({"LOTSE_ENGINE_URL": "localhost:5005"}, "LOTSE_ENGINE_URL"),
        ({"LOTSE_TRANSLATOR": "babelfish"}, "LOTSE_TRANSLATOR"),
        ({"LOTSE_TRANSLATOR": "libre"}, "LOTSE_TRANSLATOR_URL"),
        ({"LOTSE_TRANSLATOR": "deepl"}, "LOTSE_TRANSLATOR_KEY"),
        ({"LOTSE_TRANSLATOR_TIMEOUT": "-1"}, "LOTSE_TRANSLATOR_TIMEOUT"),
        ({"LOTSE_ENV": "staging"}, "LOTSE_ENV"),
        ({"LOTSE_DEFAULT_LANGUAGE": "es"}, "LOTSE_DEFAULT_LANGUAGE"),
        (
            {"LOTSE_ENV": "production", "TELEGRAM_TOKEN": "1:abc", "TELEGRAM_WEBHOOK_SECRET": "changeme"},
            "TELEGRAM_WEBHOOK_SECRET",
        ),
    ],
)
def test_wrong_values_are_named(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        load_settings(env)


def test_cli_reports_a_wrong_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.__main__ import main

    monkeypatch.setenv("APP_PORT", "eighty")
    assert main(["db-upgrade"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lotse: APP_PORT") and "\n" not in err
