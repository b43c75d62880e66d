"""The suite's password hasher: the production one, admitted the same way, at few iterations."""

from __future__ import annotations

from core.platform.passwords import AdmittedPBKDF2PasswordHasher

# What the suite names in PASSWORD_HASHER, for its own process and the processes it starts.
TEST_PASSWORD_HASHER = "tests.hashers.FastAdmittedPBKDF2PasswordHasher"


class FastAdmittedPBKDF2PasswordHasher(AdmittedPBKDF2PasswordHasher):
    """Same algorithm name and admission (slots, priority, no connection held); a thousandth of
    Django's iterations, so a signup or login costs a millisecond instead of half a second."""

    iterations = 1_000
