"""Credentials: each vendor's key shape found; look-alikes (UUIDs, git shas, words, placeholders) not."""

from __future__ import annotations

import base64
import json

import pytest

from ragbus.shields.secrets import find_secrets, looks_random, shannon_entropy


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


HEADER, PAYLOAD = b64({"alg": "HS256", "typ": "JWT"}), b64({"sub": "1234567890", "iat": 1516239022})
JWT = f"{HEADER}.{PAYLOAD}.SflKxwRJSMeKKF2QT4fw"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HECdnH\n"
    "-----END RSA PRIVATE KEY-----"
)


def found(text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in find_secrets(text)]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("key: sk-proj-4fT9xQ2LmN8vR3kP7wYz1aBcD5eFgH6iJ0kLmNoPqRsT ok", "OPENAI_API_KEY",
         "sk-proj-4fT9xQ2LmN8vR3kP7wYz1aBcD5eFgH6iJ0kLmNoPqRsT"),
        ("OPENAI_API_KEY=sk-3aF9kLmN2pQrS5tUvW8xYz1BcDeFgHiJ4kLmNoPqRsTuVwXy", "OPENAI_API_KEY",
         "sk-3aF9kLmN2pQrS5tUvW8xYz1BcDeFgHiJ4kLmNoPqRsTuVwXy"),
        ("use sk-ant-api03-Xy7kQ2mN9pL4rT6vB8wZ1cD3fG5hJ0kM2nP4qR6sT8uV0wX2yZ4-AbC", "ANTHROPIC_API_KEY",
         "sk-ant-api03-Xy7kQ2mN9pL4rT6vB8wZ1cD3fG5hJ0kM2nP4qR6sT8uV0wX2yZ4-AbC"),
        ("id AKIAIOSFODNN7EXAMPLE here", "AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
        ("token ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R ok", "GITHUB_TOKEN",
         "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"),
        ("pat github_pat_11ABCDEFG0123456789abc_0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGH1",
         "GITHUB_TOKEN",
         "github_pat_11ABCDEFG0123456789abc_0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGH1"),
        ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "SLACK_TOKEN",
         "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
        ("maps AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY,", "GOOGLE_API_KEY",
         "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "STRIPE_KEY", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        (f"Authorization: Bearer {JWT}", "JWT", JWT),
        (f"the key:\n{PEM}\nend", "PRIVATE_KEY", PEM),
        # a block cut off before its END line is still a key
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "PRIVATE_KEY",
         "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
        ('db_password = "hunter2!"', "PASSWORD", "hunter2!"),
        ("PGPASSWORD=Summer2024! psql", "PASSWORD", "Summer2024!"),
        ("postgres://admin:S3cr3tP4ss@db.internal:5432/app", "PASSWORD", "S3cr3tP4ss"),
        ('{"client_secret": "9f8e7d6c5b4a3f2e1d0c9b8a"}', "API_KEY", "9f8e7d6c5b4a3f2e1d0c9b8a"),
        ("curl -H 'Authorization: Bearer 8f4b2c9e1a7d3f6b0c5e9a2d4f7b1c8e'", "API_KEY",
         "8f4b2c9e1a7d3f6b0c5e9a2d4f7b1c8e"),
    ],
)  # fmt: skip
def test_each_kind_is_found(text: str, kind: str, value: str) -> None:
    assert found(text) == [(kind, value)]


def test_an_aws_secret_key_needs_its_name_or_its_access_key_nearby() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert found(f"aws_secret_access_key = {secret}") == [("AWS_SECRET_KEY", secret)]
    assert found(f"AKIAIOSFODNN7EXAMPLE {secret}") == [
        ("AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
        ("AWS_SECRET_KEY", secret),
    ]
    assert found(f"a random path segment {secret} alone") == []


@pytest.mark.parametrize(
    "text",
    [
        "request 550e8400-e29b-41d4-a716-446655440000 failed",  # a UUID
        "fixed in commit 9fceb02d0ae598e95dc970b74767f19372d61af8",  # a git sha
        "internationalization and counterrevolutionaries are long words",
        "pip install sk-learn-tutorial-for-beginners",  # an sk- slug without digits
        "password = user.password; token = get_token(user_id); password: ********",
        "password=changeme api_key=<your-api-key> secret=${SECRET} token: os.environ['TOKEN']",
        "The AKIA prefix and eyJhbGciOi are just fragments",
        "tokens = tokenizer(text)",
        "eyJub3QiOiAiYSBqd3QifQ.eyJzdWIiOiAiMTIzNDU2Nzg5MCJ9.abc",  # a header without alg or typ
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
        "The password policy requires 12 characters.",
    ],
)
def test_look_alikes_are_not_secrets(text: str) -> None:
    assert find_secrets(text) == []


def test_randomness_measures() -> None:
    assert shannon_entropy("aaaa") == 0
    assert shannon_entropy("abcd") == 2
    assert looks_random("9f8e7d6c5b4a3f2e")
    assert not looks_random("CONFIDENTIAL")
    assert not looks_random("xxxxxxxxxxxx")


def test_only_the_requested_kinds_are_found() -> None:
    text = "AKIAIOSFODNN7EXAMPLE and ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"
    assert [s.kind for s in find_secrets(text, {"GITHUB_TOKEN"})] == ["GITHUB_TOKEN"]
