"""Settings resolve flag > environment > config file > default, and name bad fields."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from sidecar.errors import ConfigError
from sidecar.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_precedence_argument_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = tmp_path / "baselined.toml"
    config.write_text("[sidecar]\nflush_interval = 3\nbucket_seconds = 30\ncompression = 500\n")
    env = {"BASELINED_FLUSH_INTERVAL": "2", "BASELINED_BUCKET_SECONDS": "20"}
    settings = Settings.resolve({"flush_interval": 1.5}, env=env, config_file=config)
    assert settings.flush_interval == 1.5  # argument
    assert settings.bucket_seconds == 20  # environment beats the file
    assert settings.compression == 500  # file beats the default
    assert settings.max_signals == 256  # default


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('store = "redis://127.0.0.1:6379/3"\nreflection = false\n')
    settings = Settings.resolve(env={"BASELINED_CONFIG": str(config)})
    assert settings.store == "redis://127.0.0.1:6379/3"
    assert settings.reflection is False


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"BASELINED_FLUSH_INTERVAL": "soon"}, "'flush_interval' from BASELINED_FLUSH_INTERVAL"),
        ({"BASELINED_BUCKET_SECONDS": "0"}, "'bucket_seconds' must be greater than 0"),
        ({"BASELINED_BUCKET_SECONDS": "1.5"}, "'bucket_seconds' from BASELINED_BUCKET_SECONDS"),
        ({"BASELINED_REFLECTION": "maybe"}, "'reflection' from BASELINED_REFLECTION"),
        ({"BASELINED_LOG_LEVEL": "loud"}, "'log_level'"),
    ],
)
def test_bad_values_name_the_field(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.resolve(env=env)
    assert fragment in str(caught.value)


def test_unknown_and_broken_config_files_are_refused(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("flush_intervall = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'flush_intervall'"):
        Settings.resolve(env={}, config_file=typo)
    broken = tmp_path / "broken.toml"
    broken.write_text("flush_interval = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.resolve(env={}, config_file=broken)
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.resolve(env={}, config_file=tmp_path / "missing.toml")


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    for f in fields(Settings):
        assert f"`{f.name}`" in text, f"docs/configuration.md does not document {f.name}"
        assert f"`BASELINED_{f.name.upper()}`" in text
