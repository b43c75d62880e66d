"""The password hasher: Django's PBKDF2, admitted before it runs (core.platform.admission).

Every hash goes through ``encode``: logins (including the dummy hash for an unknown e-mail),
signups, password changes, resets and invitation accepts. Each takes one of this process's
bounded hashing slots, runs on a thread below serving's priority and holds no pooled database
connection while it burns its half second of CPU, so a flood of logins can neither starve the pool
nor take the cores other tenants' requests need.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import PBKDF2PasswordHasher

from core.platform.admission import password_hash


class AdmittedPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Same algorithm name as Django's, so every stored hash still verifies."""

    def encode(self, password: str, salt: str, iterations: Any = None) -> str:
        encode = super().encode
        return password_hash(lambda: encode(password, salt, iterations))
