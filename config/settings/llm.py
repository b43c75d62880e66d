"""Claude through the Anthropic API: on only when ANTHROPIC_API_KEY is set (offline answers otherwise)."""

from .env import PRODUCTION, env

ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="") or None
ANTHROPIC_MODEL = env.str("ANTHROPIC_MODEL", default="claude-sonnet-4-6")
ANTHROPIC_MAX_RETRIES = env.int("ANTHROPIC_MAX_RETRIES", default=2)
ANTHROPIC_TIMEOUT = env.float("ANTHROPIC_TIMEOUT", default=60.0)
if PRODUCTION and not ANTHROPIC_API_KEY and not env.bool("ALLOW_OFFLINE_LLM", default=False):
    raise RuntimeError("ANTHROPIC_API_KEY is required in production (or set ALLOW_OFFLINE_LLM=true).")
