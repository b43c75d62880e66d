"""The one environment reader every settings module shares."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
PRODUCTION = env.bool("STRATA_PRODUCTION", default=False)
# Where the embedded database, the demo's credentials and local mail live (nothing is created here).
DATA_DIR = Path(env.str("STRATA_DATA_DIR", default=str(BASE_DIR / ".data")))


def required_in_production(name: str, default: str) -> str:
    """Read ``name``; production refuses to start without it, development uses ``default``."""
    if PRODUCTION:
        return env.str(name)
    return env.str(name, default=default)
