"""Strata settings: the base, then one small module per integration (each on only when configured)."""

from .accounts import *  # noqa: F403
from .ai import *  # noqa: F403
from .api import *  # noqa: F403
from .base import *  # noqa: F403
from .database import *  # noqa: F403
from .email import *  # noqa: F403
from .fairness import *  # noqa: F403
from .jobs import *  # noqa: F403
from .llm import *  # noqa: F403
from .redis import *  # noqa: F403
from .security import *  # noqa: F403
from .sockets import *  # noqa: F403
from .sso import *  # noqa: F403
from .stripe import *  # noqa: F403
