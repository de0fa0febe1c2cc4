from __future__ import annotations

from pathlib import Path

import pytest

from ressonance.config import DEV_APP, load
from ressonance.errors import ConfigError


def test_defaults_start_the_development_app() -> None:
    settings = load(env={})
    assert settings.port == 6001 and settings.host == "0.0.0.0"
    assert settings.dev_app and settings.apps == (DEV_APP,)


def test_env_app_and_precedence(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'port = 7000\nactivity_timeout = 30\n[[apps]]\nid = "5"\nkey = "k5"\nsecret = "s5"\n'
    )
    env = {
        "RESSONANCE_PORT": "7001",
        "RESSONANCE_APP_ID": "42",
        "RESSONANCE_APP_KEY": "key",
        "RESSONANCE_APP_SECRET": "secret",
        "RESSONANCE_APP_CLIENT_EVENTS": "false",
        "RESSONANCE_APP_MAX_PAYLOAD_KB": "20",
        "RESSONANCE_APP_ALLOWED_ORIGINS": "https://a.example/, https://B.example",
    }
    settings = load(cli={"port": 7002, "host": None}, env=env, config_file=config)
    assert settings.port == 7002
    assert settings.activity_timeout == 30
    assert not settings.dev_app
    ids = [a.id for a in settings.apps]
    assert ids == ["5", "42"]
    app = settings.apps[1]
    assert app.client_events is False and app.max_payload_kb == 20
    assert app.allowed_origins == ("https://a.example", "https://b.example")
    assert load(env=env).port == 7001


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1", "unknown setting"),
        ('[[apps]]\nid = "1"\nkey = "k"\n', "needs secret"),
        (
            '[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\nclient_event = true\n',
            "unknown app setting",
        ),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\nmax_payload_kb = "lots"\n', "not a valid"),
        ("port = 0", "port must be"),
        ("port = 70000", "between"),
        ('slow_consumer = "maybe"', "slow_consumer"),
        ('broker = "redis:/localhost"', "is not one of: memory, redis://"),
        ("workers = 2", "workers > 1 needs a shared broker"),
        ("node_timeout = 0", "node_timeout must be greater than 0"),
        ("node_timeout = 2", "node_timeout must be at least 3 seconds"),
        ("this is not toml", "not valid TOML"),
        (
            '[[apps]]\nid="1"\nkey="k"\nsecret="s"\n[[apps]]\nid="2"\nkey="k"\nsecret="t"\n',
            "share the key",
        ),
    ],
)
def test_bad_config_is_reported(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        settings = load(env={}, config_file=config)
        from ressonance.apps.static import StaticAppStore

        StaticAppStore(settings.apps)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(env={}, config_file="/nonexistent/ressonance.toml")


def test_cluster_settings() -> None:
    default = load(env={})
    assert default.broker == "memory" and default.workers == 1 and default.node_timeout == 10
    assert default.node_id and default.node_id != load(env={}).node_id  # generated, unique
    settings = load(
        cli={"broker": "nats://127.0.0.1:4222", "workers": 2},
        env={
            "RESSONANCE_NODE_ID": "edge-1",
            "RESSONANCE_REGION": "eu",
            "RESSONANCE_BROKER_PREFIX": "app1",
            "RESSONANCE_NODE_TIMEOUT": "5",
        },
    )
    assert (settings.broker, settings.workers, settings.node_id) == (
        "nats://127.0.0.1:4222",
        2,
        "edge-1",
    )
    assert (settings.region, settings.broker_prefix, settings.node_timeout) == ("eu", "app1", 5)


def test_subscription_limits_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[apps]]\nid = "5"\nkey = "k5"\nsecret = "s5"\n'
        "max_subscriptions_per_second = 20\nmax_channels_per_connection = 0\n"
    )
    (app,) = load(env={}, config_file=config).apps
    assert app.max_subscriptions_per_second == 20 and app.max_channels_per_connection == 0
    env = {"RESSONANCE_APP_ID": "1", "RESSONANCE_APP_KEY": "k", "RESSONANCE_APP_SECRET": "s"}
    (default,) = load(env=env).apps
    assert default.max_subscriptions_per_second == 128
    assert default.max_channels_per_connection == 128
    env["RESSONANCE_APP_MAX_CHANNELS_PER_CONNECTION"] = "-1"
    with pytest.raises(ConfigError, match="max_channels_per_connection must not be negative"):
        load(env=env)


@pytest.mark.parametrize("value", ["\u00b2", "--3", "9" * 5000])
def test_an_int_setting_that_is_not_a_plain_number_is_a_config_error(value: str) -> None:
    """A ConfigError (exit 2 with the setting's name), never a ValueError traceback."""
    with pytest.raises(ConfigError, match="activity_timeout"):
        load(env={"RESSONANCE_ACTIVITY_TIMEOUT": value})


def test_replay_guard_is_off_by_default_and_set_from_file_or_environment(tmp_path: Path) -> None:
    assert load(env={}).replay_guard is False
    config = tmp_path / "c.toml"
    config.write_text("replay_guard = true\nreplay_guard_size = 5000\n")
    settings = load(config_file=config)
    assert settings.replay_guard is True and settings.replay_guard_size == 5000
    settings = load(env={"RESSONANCE_REPLAY_GUARD": "1", "RESSONANCE_REPLAY_GUARD_SIZE": "9"})
    assert settings.replay_guard is True and settings.replay_guard_size == 9
    with pytest.raises(ConfigError, match="replay_guard_size"):
        load(env={"RESSONANCE_REPLAY_GUARD_SIZE": "0"})
