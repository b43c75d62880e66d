"""Strata settings: the base, then one small module per integration (each on only when configured)."""

from .base import *  # noqa: F403
from .channels import *  # noqa: F403
from .llm import *  # noqa: F403
from .stripe import *  # noqa: F403
