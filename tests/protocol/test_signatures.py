"""The signature test vectors (docs/protocol.md, "Signature test vectors")."""

from __future__ import annotations

from ressonance.protocol import signatures

KEY = "278d425bdf160c739803"
SECRET = "7ad3773142a6692b25b8"


def test_private_channel_vector() -> None:
    auth = signatures.channel_auth(KEY, SECRET, "1234.1234", "private-foobar")
    assert auth == f"{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"


def test_presence_channel_vector_recomputed() -> None:
    # The Pusher docs print a digest for other channel_data; this one is recomputed
    # (docs/protocol.md, "Signature test vectors").
    channel_data = '{"user_id":10,"user_info":{"name":"Mr. Channels"}}'
    auth = signatures.channel_auth(KEY, SECRET, "1234.1234", "presence-foobar", channel_data)
    assert auth == f"{KEY}:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"


def test_user_signin_vector() -> None:
    auth = signatures.user_auth(KEY, SECRET, "1234.1234", '{"id":"12345"}')
    assert auth == f"{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"


def test_rest_api_vector() -> None:
    body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    assert signatures.body_md5(body) == "ec365a775a4cd0599faeb73354201b6f"
    params = [
        ("auth_key", KEY),
        ("auth_timestamp", "1353088179"),
        ("auth_version", "1.0"),
        ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
    ]
    expected_string = (
        "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
    )
    assert signatures.api_string_to_sign("POST", "/apps/3/events", params) == expected_string
    assert (
        signatures.api_signature(SECRET, "POST", "/apps/3/events", params)
        == "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    )


def test_string_to_sign_sorts_lowercases_and_skips_signature() -> None:
    params = [("b", "2"), ("A", "x y"), ("auth_signature", "zzz")]
    assert signatures.api_string_to_sign("get", "/p", params) == "GET\n/p\na=x y&b=2"


def test_verify_is_exact() -> None:
    assert signatures.verify("k:abc", "k:abc")
    assert not signatures.verify("k:abc", "k:abd")
    assert not signatures.verify("k:abc", None)
    assert not signatures.verify("k:abc", 123)
