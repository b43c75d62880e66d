"""Fair shares between tenants: admission limits, allowance reservations, and how outages answer."""

import os

from .env import env

# Seconds a reservation of allowance outlives its last checkpoint; past it, the call's process is
# taken for dead and what it checkpointed is billed (billing.services.reservations).
ALLOWANCE_RESERVATION_TTL_SECONDS = env.int("ALLOWANCE_RESERVATION_TTL_SECONDS", default=300)
# Password hashes computed at once per process (each holds a core for about half a second): half
# the cores, so a login flood leaves the other half to everyone else. A login waiting longer than
# PASSWORD_HASHING_WAIT_SECONDS for one is answered 503 with Retry-After.
PASSWORD_HASHING_SLOTS = env.int("PASSWORD_HASHING_SLOTS", default=max(1, (os.cpu_count() or 2) // 2))
PASSWORD_HASHING_WAIT_SECONDS = env.float("PASSWORD_HASHING_WAIT_SECONDS", default=2.0)
# Retry-After (seconds) of a 503 answered while the database or Redis is unreachable.
OUTAGE_RETRY_AFTER_SECONDS = env.int("OUTAGE_RETRY_AFTER_SECONDS", default=5)
# Django's PBKDF2, admitted first: a bounded number of hashes at once, no pooled connection held.
# PASSWORD_HASHER names a hasher class, never an iteration count: the test suite names its fast
# subclass (tests/hashers.py) for itself and the processes it starts; deployments leave it unset.
PASSWORD_HASHERS = [env.str("PASSWORD_HASHER", default="core.platform.passwords.AdmittedPBKDF2PasswordHasher")]
# How often expired allowance reservations are settled (a job, once per period across workers).
BILLING_RESERVATIONS_EXPIRE_CRON = env.str("BILLING_RESERVATIONS_EXPIRE_CRON", default="* * * * *")
