"""The runtime daemon's TLS settings (:func:`meridio.runtime.local.daemon.tls_settings`): which values of
``MERIDIO_TLS_INSECURE`` turn mutual TLS off, how ``MERIDIO_TLS_CERT_LIFETIME`` is read, its 10 s
minimum, and errors that name the variable.

Pure: the environment is a plain mapping passed in; ``os.environ`` is not read.
"""
from __future__ import annotations

import pytest

from meridio.runtime.local import daemon, pki

INSECURE, LIFETIME = "MERIDIO_TLS_INSECURE", "MERIDIO_TLS_CERT_LIFETIME"


def test_the_variable_names() -> None:
    assert daemon.LIFETIME_ENV == LIFETIME


def test_without_variables_tls_is_on_with_an_hours_lifetime() -> None:
    assert daemon.tls_settings({}) == (True, pki.DEFAULT_LIFETIME_S)
    assert pki.DEFAULT_LIFETIME_S == 3600.0


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes", "on", " true ", "On\n"])
def test_insecure_true_values_turn_tls_off(value: str) -> None:
    assert daemon.tls_settings({INSECURE: value}) == (False, pki.DEFAULT_LIFETIME_S)


@pytest.mark.parametrize("value", ["", "false", "FALSE", "0", "no", "off", "  "])
def test_insecure_false_values_keep_tls_on(value: str) -> None:
    assert daemon.tls_settings({INSECURE: value})[0] is True


@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "t", "y", "truee"])
def test_insecure_other_values_are_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        daemon.tls_settings({INSECURE: value})
    assert str(caught.value) == f"{INSECURE}={value!r}: must be true or false"


def test_an_insecure_error_quotes_at_most_64_characters() -> None:
    with pytest.raises(ValueError) as caught:
        daemon.tls_settings({INSECURE: "x" * 500})
    assert "x" * 64 in str(caught.value) and "x" * 65 not in str(caught.value)


@pytest.mark.parametrize(("value", "seconds"), [
    ("10s", 10.0), ("1h", 3600.0), ("90m", 5400.0), ("1h30m", 5400.0), ("2.5m", 150.0), ("10000ms", 10.0),
    ("24h", 86400.0), ("", pki.DEFAULT_LIFETIME_S),
], ids=["minimum", "hour", "minutes", "compound", "fraction", "milliseconds", "day", "empty-is-default"])
def test_lifetime_is_a_go_duration(value: str, seconds: float) -> None:
    on, lifetime = daemon.tls_settings({LIFETIME: value})
    assert on is True and lifetime == pytest.approx(seconds)


def test_lifetime_applies_with_tls_off_too() -> None:
    assert daemon.tls_settings({INSECURE: "true", LIFETIME: "2m"}) == (False, 120.0)


@pytest.mark.parametrize("value", ["9s", "9999ms", "0", "0s", "-1h"], ids=["9s", "just-under", "zero", "zero-s",
                                                                            "negative"])
def test_lifetime_under_10_seconds_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        daemon.tls_settings({LIFETIME: value})
    assert str(caught.value) == f"{LIFETIME}={value!r}: must be at least 10s"


@pytest.mark.parametrize("value", ["ten", "10", "1d", "1h x", "s"], ids=["word", "no-unit", "days", "trailing",
                                                                          "unit-only"])
def test_lifetime_that_is_no_duration_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        daemon.tls_settings({LIFETIME: value})
    message = str(caught.value)
    assert message.startswith(f"{LIFETIME}={value!r}: ") and "invalid duration" in message


def test_a_lifetime_error_quotes_at_most_64_characters() -> None:
    with pytest.raises(ValueError) as caught:
        daemon.tls_settings({LIFETIME: "1" * 500})
    message = str(caught.value)
    assert message.startswith(f"{LIFETIME}={'1' * 64!r}... (500 characters): ")
    assert "1" * 65 not in message, "the duration parser's own message must not echo the input either"


def test_the_insecure_variable_is_checked_before_the_lifetime() -> None:
    with pytest.raises(ValueError, match=f"^{INSECURE}="):
        daemon.tls_settings({INSECURE: "maybe", LIFETIME: "1s"})
