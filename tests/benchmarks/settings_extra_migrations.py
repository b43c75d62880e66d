"""Strata's settings, plus the benchmark's throwaway ai migrations when STRATA_EXTRA_AI_MIGRATIONS names
their package (tests/migration_modules.py writes it): what a deploy bringing a new migration looks like."""

import os

from config.settings import *  # noqa: F403

if os.environ.get("STRATA_EXTRA_AI_MIGRATIONS"):
    MIGRATION_MODULES = {"ai": os.environ["STRATA_EXTRA_AI_MIGRATIONS"]}
