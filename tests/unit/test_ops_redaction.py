"""Redaction rules of the flare: secret-named keys, URL passwords, key=value pairs, remembered values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.runtime.diagnostics import REDACTED, Scrubber, metrics_snapshot, secret_name


def test_secret_names() -> None:
    for name in (
        "password",
        "NATS_PASSWORD",
        "api_key",
        "VIGIL_API_TOKEN",
        "client_secret",
        "nats.credentials",
        "private-key",
        "AUTHORIZATION",
        "session_cookie",
    ):
        assert secret_name(name), name
    for name in ("max_image_tags", "otlp_endpoint", "monitor_port", "keep_runs", "data_dir", "source"):
        assert not secret_name(name), name


def test_tree_redacts_secret_keys_and_url_passwords_and_remembers_them() -> None:
    scrub = Scrubber()
    tree = scrub.tree({"nats": {"url": "nats://u:pw-1234@h:4222", "credentials": "/etc/vigil/nats.creds"}, "port": 1})
    assert tree == {"nats": {"url": f"nats://u:{REDACTED}@h:4222", "credentials": REDACTED}, "port": 1}
    assert scrub.text("copy: pw-1234 and /etc/vigil/nats.creds") == f"copy: {REDACTED} and {REDACTED}"


def test_text_redacts_pairs_json_and_bearer() -> None:
    scrub = Scrubber()
    text = scrub.text('password=abc12345 "api_token": "xyz98765" Authorization: Bearer qwe.rty.uio')
    for secret in ("abc12345", "xyz98765", "qwe.rty.uio"):
        assert secret not in text
    assert text.count(REDACTED) == 3


def test_env_keeps_only_vigil_names_but_remembers_other_secrets() -> None:
    scrub = Scrubber()
    env = scrub.env({"VIGIL_DATA_DIR": "/d", "VIGIL_X_TOKEN": "t0ken-value", "DB_PASSWORD": "dbpass-99", "HOME": "/h"})
    assert env == {"VIGIL_DATA_DIR": "/d", "VIGIL_X_TOKEN": REDACTED}
    assert "dbpass-99" not in scrub.text("log: dbpass-99")


@given(
    st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="@/:'\",}=%"),
        min_size=4,
        max_size=30,
    )
)
def test_any_url_password_is_removed(password: str) -> None:
    assert password not in Scrubber().text(f"see https://user:{password}@example.com/path for details")


def test_metrics_snapshot_sums_counters_per_service() -> None:
    beats = [{"service": "a", "counters": {"in": 2, "dead_letters": 1}}, {"service": "a", "counters": {"in": 3}}]
    consumers = [{"stream": "EVENTS", "consumer": "a", "lag": 7}]
    snap = metrics_snapshot(beats, consumers)
    assert snap["services"]["a"] == {"in": 5, "dead_letters": 1}
    assert snap["consumer_lag"] == {"EVENTS/a": 7} and snap["dead_letters_counted"] == 1
