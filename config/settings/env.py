"""The one environment reader every settings module shares."""

import os
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
PRODUCTION = env.bool("STRATA_PRODUCTION", default=False)
# Where the embedded database, the demo's credentials, local mail and the development secret key
# live (nothing else is created here).
DATA_DIR = Path(env.str("STRATA_DATA_DIR", default=str(BASE_DIR / ".data")))


def data_dir_secret_key(data_dir: Path) -> str:
    """The data folder's own secret key, made at random on its first start and kept there (0600).

    Made under a temporary name and linked into place, which fails if the key exists: processes
    starting together on a fresh folder all read the one key that won, never half of one.
    """
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(8)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(50))
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the key
        finally:
            temporary.unlink(missing_ok=True)
    return path.read_text().strip()
