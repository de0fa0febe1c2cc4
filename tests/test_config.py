from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ressonance.config import DEV_APP, load
from ressonance.errors import ConfigError
from ressonance.models import App
from ressonance.scaling.factory import ACCEPTED


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


def test_duplicate_apps_are_refused_alike_at_load_and_by_the_store(tmp_path: Path) -> None:
    """One rule (apps/static.py check_unique): ids are checked before keys, everywhere."""
    from ressonance.apps.static import StaticAppStore

    config = tmp_path / "dup.toml"
    config.write_text(
        '[[apps]]\nid="1"\nkey="k"\nsecret="s"\n'
        '[[apps]]\nid="2"\nkey="k"\nsecret="t"\n'
        '[[apps]]\nid="1"\nkey="j"\nsecret="u"\n'
    )
    with pytest.raises(ConfigError, match=r"^two apps share the id '1'$"):
        load(env={}, config_file=config)
    first = App(id="1", key="k", secret="s")
    with pytest.raises(ConfigError, match=r"^two apps share the id '1'$"):
        StaticAppStore([first, App(id="2", key="k", secret="t"), App(id="1", key="j", secret="u")])
    with pytest.raises(ConfigError, match=r"^two apps share the key 'k'$"):
        StaticAppStore([first, App(id="2", key="k", secret="t")])


@pytest.mark.parametrize(
    "url",
    ["memory", "redis://h:6379/0", "rediss://h", "unix:///r.sock", "nats://h:4222", "tls://h:4222"],
)
def test_config_accepts_the_broker_urls_make_broker_knows(url: str) -> None:
    assert load(env={"RESSONANCE_BROKER": url}).broker == url


def test_an_unknown_broker_is_refused_with_the_factory_message() -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"RESSONANCE_BROKER": "amqp://h"})
    assert str(info.value) == f"broker 'amqp://h' is not one of: {ACCEPTED}"


def test_origins_from_a_list_or_a_string_are_normalised_alike(tmp_path: Path) -> None:
    config = tmp_path / "origins.toml"
    config.write_text(
        '[[apps]]\nid="1"\nkey="k"\nsecret="s"\n'
        'allowed_origins = [" HTTPS://A.example/ ", "", "https://b.example"]\n'
    )
    from_list = load(env={}, config_file=config).apps[0].allowed_origins
    env = {
        "RESSONANCE_APP_ID": "1",
        "RESSONANCE_APP_KEY": "k",
        "RESSONANCE_APP_SECRET": "s",
        "RESSONANCE_APP_ALLOWED_ORIGINS": " HTTPS://A.example/ ,, https://b.example",
    }
    from_string = load(env=env).apps[0].allowed_origins
    assert from_list == from_string == ("https://a.example", "https://b.example")


def test_admin_token_generated_on_loopback_and_required_elsewhere(tmp_path: Path) -> None:
    settings = load(env={})
    assert settings.admin_port == 9601 and settings.admin_host == "127.0.0.1"
    assert settings.admin_token_generated and len(settings.admin_token) >= 16
    assert load(env={}).admin_token != settings.admin_token  # a new one each run
    with pytest.raises(ConfigError, match="not a loopback address: set RESSONANCE_ADMIN_TOKEN"):
        load(env={"RESSONANCE_ADMIN_HOST": "0.0.0.0"})
    chosen = load(env={"RESSONANCE_ADMIN_HOST": "0.0.0.0", "RESSONANCE_ADMIN_TOKEN": "t" * 20})
    assert chosen.admin_token == "t" * 20 and not chosen.admin_token_generated
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load(env={"RESSONANCE_ADMIN_TOKEN": "short"})
    off = load(env={"RESSONANCE_ADMIN_PORT": "0", "RESSONANCE_ADMIN_HOST": "0.0.0.0"})
    assert off.admin_port == 0 and not off.admin_token  # off: nothing to protect
    with pytest.raises(ConfigError, match="admin_port must differ from port"):
        load(cli={"port": 7000, "admin_port": 7000})


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ("", None, ""),
        ("metrics_app_labels = true", None, "*"),
        ("metrics_app_labels = false", None, ""),
        ('metrics_app_labels = ["1", "2"]', None, "1,2"),
        ("", "true", "*"),
        ("", "1001, 1002", "1001,1002"),
    ],
)
def test_metrics_app_labels(tmp_path: Path, toml: str, env: str | None, expected: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(toml + "\n", encoding="utf-8")
    environ = {"RESSONANCE_METRICS_APP_LABELS": env} if env is not None else {}
    assert load(env=environ, config_file=config).metrics_app_labels == expected


def test_metrics_settings_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("metrics_app_labels = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="metrics_app_labels"):
        load(env={}, config_file=config)
    with pytest.raises(ConfigError, match="metrics_compat"):
        load(env={"RESSONANCE_METRICS_COMPAT": "pusher"})


def test_webhooks_from_toml_tables_and_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "hooks.toml"
    config.write_text(
        """
[[apps]]
id = "1"
key = "k"
secret = "s"
webhook_batching = true

[[apps.webhooks]]
url = "https://example.com/hooks"
event_types = ["channel_occupied", "member_added"]
filter = { channel_name_starts_with = "presence-", channel_name_ends_with = "-room" }
headers = { "X-Api-Key" = "abc" }
""",
        encoding="utf-8",
    )
    (app,) = load(config_file=config).apps
    (hook,) = app.webhooks
    assert app.webhook_batching
    assert hook.url == "https://example.com/hooks"
    assert hook.event_types == ("channel_occupied", "member_added")
    assert (hook.channel_name_starts_with, hook.channel_name_ends_with) == ("presence-", "-room")
    assert hook.headers == (("X-Api-Key", "abc"),)
    assert hook.wants("member_added", "presence-chat-room")
    assert not hook.wants("member_added", "private-chat-room")
    assert not hook.wants("client_event", "presence-chat-room")
    env = {
        "RESSONANCE_APP_ID": "2",
        "RESSONANCE_APP_KEY": "k2",
        "RESSONANCE_APP_SECRET": "s2",
        "RESSONANCE_APP_WEBHOOKS": json.dumps(
            [{"url": "http://10.0.0.1:8080/h", "event_types": ["client_event"]}]
        ),
    }
    (from_env,) = load(env=env).apps
    assert from_env.webhooks[0].to_json() == {
        "url": "http://10.0.0.1:8080/h",
        "event_types": ["client_event"],
    }


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ([{"url": "ftp://example.com/h", "event_types": ["channel_occupied"]}], "webhooks[0].url"),
        ([{"url": "https:///h", "event_types": ["channel_occupied"]}], "webhooks[0].url"),
        ([{"url": "https://e.com/h", "event_types": ["channel_occupy"]}], "unknown event type"),
        ([{"url": "https://e.com/h", "event_types": []}], "webhooks[0].event_types"),
        ([{"url": "https://e.com/h", "event_types": ["cache_miss"], "x": 1}], "unknown field"),
        (
            [{"url": "https://e.com/h", "event_types": ["cache_miss"], "filter": {"regex": "."}}],
            "webhooks[0].filter",
        ),
        (
            [
                {"url": "https://e.com/h", "event_types": ["cache_miss"]},
                {
                    "url": "https://e.com/h",
                    "event_types": ["cache_miss"],
                    "headers": {"X-Pusher-Signature": "forged"},
                },
            ],
            "webhooks[1].headers.X-Pusher-Signature",
        ),
        ("not json", "not valid JSON"),
    ],
)
def test_a_bad_webhook_is_a_config_error_naming_the_field(hooks: object, message: str) -> None:
    env = {
        "RESSONANCE_APP_ID": "2",
        "RESSONANCE_APP_KEY": "k2",
        "RESSONANCE_APP_SECRET": "s2",
        "RESSONANCE_APP_WEBHOOKS": hooks if isinstance(hooks, str) else json.dumps(hooks),
    }
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(env=env)
