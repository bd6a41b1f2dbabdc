"""Production refuses keys anyone could guess or that protect two things at once."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from duckline.core.config import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DUCKLINE_* variables and no .env file: only what the test passes counts."""
    for name in ("DUCKLINE_SECRET_KEY", "DUCKLINE_DATA_KEY", "DUCKLINE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("weak", "why"),
    [
        ("s" * 32, "fewer than 8 distinct characters"),
        ("s" * 200, "fewer than 8 distinct characters"),
        ("ab" * 40, "fewer than 8 distinct characters"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "fewer than 8 distinct characters"),
        ("0123456789abcdef" * 4, "too regular"),  # 64 characters, but one 16-character unit repeated
        ("Passw0rd!" * 4, "too regular"),
    ],
    ids=[
        "one-character",
        "one-character-long",
        "two-characters",
        "almost-one-character",
        "hex-repeated",
        "word-repeated",
    ],
)
@pytest.mark.parametrize("name", ["secret_key", "data_key"])
def test_production_refuses_a_key_of_low_entropy(name: str, weak: str, why: str) -> None:
    keys = {"secret_key": secrets.token_urlsafe(32), "data_key": secrets.token_urlsafe(32)} | {name: weak}
    with pytest.raises(ValidationError) as raised:
        Settings(environment="production", **keys)
    assert f"DUCKLINE_{name.upper()}" in str(raised.value) and why in str(raised.value)
    assert Settings(environment="development", **keys).environment == "development"  # fine for a demo


def test_production_refuses_the_same_key_for_sessions_and_data() -> None:
    key = secrets.token_urlsafe(32)
    with pytest.raises(ValidationError) as raised:
        Settings(environment="production", secret_key=key, data_key=key)
    assert "DUCKLINE_DATA_KEY must differ from DUCKLINE_SECRET_KEY" in str(raised.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_urlsafe(24),
        lambda: secrets.token_hex(16),  # 128 random bits: the least that passes
        lambda: secrets.token_hex(32),
    ],
    ids=["urlsafe-32", "urlsafe-24", "hex-16", "hex-32"],
)
def test_production_accepts_random_keys(make: object) -> None:
    assert callable(make)
    for _ in range(200):  # random keys pass every time, not most of the time
        secret_key, data_key = make(), make()
        settings = Settings(environment="production", secret_key=secret_key, data_key=data_key)
        assert (settings.secret_key, settings.data_key) == (secret_key, data_key)
