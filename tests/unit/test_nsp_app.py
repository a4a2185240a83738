"""`meridio run nsp` settings: Meridio's NSP_* names, defaults, bad values named."""
from __future__ import annotations

import pytest

from meridio.common import settings
from meridio.nsp import app


def test_defaults_match_meridio() -> None:
    s = settings.parse(app.Settings, app.ENV_PREFIX, [], environ={})
    assert (s.port, s.datasource, s.entry_timeout) == (7778, "/run/nsp/data/registry.db", 60.0)
    assert s.config_poll_interval == 0.2 and s.health_address == ""


def test_meridio_environment_variables_are_read_and_flags_win() -> None:
    env = {"NSP_PORT": "7779", "NSP_DATASOURCE": "/tmp/x.db", "NSP_ENTRY_TIMEOUT": "1m30s",
           "NSP_LOG_LEVEL": "DEBUG", "NSP_CONFIG_FILE": "/etc/c.yaml"}
    s = settings.parse(app.Settings, app.ENV_PREFIX, ["--port", "7000"], environ=env)
    assert (s.port, s.datasource, s.entry_timeout, s.log_level, s.config_file) == (
        7000, "/tmp/x.db", 90.0, "DEBUG", "/etc/c.yaml")


@pytest.mark.parametrize("env, name", [
    ({"NSP_ENTRY_TIMEOUT": "soon"}, "NSP_ENTRY_TIMEOUT"),
    ({"NSP_PORT": "http"}, "NSP_PORT"),
    ({"NSP_LOG_LEVEL": "LOUD"}, "NSP_LOG_LEVEL"),
])
def test_a_bad_value_is_an_error_naming_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(settings.SettingsError, match=f"^{name}: "):
        settings.parse(app.Settings, app.ENV_PREFIX, [], environ=env)
