"""Protection of personal data and secrets: encryption at rest, keyed hashes, password hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key.encode())


class DataProtector:
    """Encrypts identity numbers and document images; hashes them for look-ups."""

    def __init__(self, data_key: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(data_key, b"duckline/encrypt")))
        self._lookup_key = _derive(data_key, b"duckline/lookup")

    def encrypt(self, plain: bytes) -> bytes:
        return self._fernet.encrypt(plain)

    def decrypt(self, cipher: bytes) -> bytes:
        return self._fernet.decrypt(cipher)

    def lookup_hash(self, *parts: str) -> str:
        """A keyed hash: equal inputs match, and without the key it cannot be reversed by guessing."""
        message = "\x1f".join(parts).encode()
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()


class SecretHasher:
    """Short-lived secrets (OTP codes) and bearer tokens: keyed or plain SHA-256, never stored raw."""

    def __init__(self, secret_key: str) -> None:
        self._key = _derive(secret_key, b"duckline/otp")

    def otp(self, phone: str, code: str) -> str:
        return hmac.new(self._key, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def token(token: str) -> str:
        # Tokens carry 256 bits of randomness; a plain hash is enough to keep them out of the DB.
        return hashlib.sha256(token.encode()).hexdigest()

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(32)


class Passwords:
    """argon2id; by default with the library's parameters (RFC 9106 low-memory profile)."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        # A hash to verify against when the account does not exist, so timing does not tell.
        self._dummy = self._hasher.hash(secrets.token_hex(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, hashed: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(hashed or self._dummy, password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False
