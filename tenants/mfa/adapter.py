"""allauth's MFA adapter for Strata: TOTP secrets and recovery-code seeds stored encrypted, issuer "Strata"."""

from __future__ import annotations

import base64

from allauth.mfa.adapter import DefaultMFAAdapter
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

# HKDF purpose label: this key opens MFA secrets only (not the SSO client secrets, not sessions).
_PURPOSE = b"strata.mfa.secret"


def _fernet_for(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _box() -> MultiFernet:
    # Encrypts with SECRET_KEY, decrypts with it or a SECRET_KEY_FALLBACKS entry (key rotation).
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet_for(key) for key in keys])


class StrataMfaAdapter(DefaultMFAAdapter):  # type: ignore[misc]  # allauth ships no type hints
    """A leaked database row does not give away anyone's second factor: allauth stores what
    ``encrypt`` returns (the TOTP secret, the recovery-code seed) and reads it through ``decrypt``."""

    def encrypt(self, text: str) -> str:
        return _box().encrypt(text.encode()).decode()

    def decrypt(self, encrypted_text: str) -> str:
        return _box().decrypt(encrypted_text.encode()).decode()

    def get_totp_issuer(self) -> str:
        # One account across organisations, so one entry in the authenticator app: the platform's.
        return str(settings.MFA_TOTP_ISSUER)
