"""A text column stored encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

_PURPOSE = b"strata.sso.secret"


def _fernet_for(secret_key: str) -> Fernet:
    # HKDF with a purpose label: the Fernet key is not the session-signing key itself.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def secret_box() -> MultiFernet:
    """Encrypts with SECRET_KEY; decrypts with it or any SECRET_KEY_FALLBACKS (key rotation)."""
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet_for(key) for key in keys])


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Plain text in Python, a Fernet token in the database; an empty value stays empty.

    A token no current key opens reads as "" (the owner re-enters the secret) rather than
    failing every query that loads the row."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        try:
            return secret_box().decrypt(value.encode()).decode()
        except InvalidToken:
            return ""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return secret_box().encrypt(str(value).encode()).decode()
