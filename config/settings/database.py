"""PostgreSQL: the embedded server by default, any PostgreSQL with pgvector through DATABASE_URL.

Connections come from Django's psycopg pool, bounded per process (CONN_MAX_AGE=0: persistent
connections leak under ASGI). Size it against the server's max_connections:
web processes x DB_POOL_MAX_SIZE + job workers x DB_POOL_MAX_SIZE + a few for admin work.
"""

from .env import DATA_DIR, env

_pool = {
    "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
    "max_size": env.int("DB_POOL_MAX_SIZE", default=8),
    # Seconds a request waits for a free connection before it fails (503, not a hang).
    "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    # Idle connections above min_size are closed after this many seconds.
    "max_idle": env.float("DB_POOL_MAX_IDLE", default=300.0),
}

if env.str("DATABASE_URL", default=""):
    _database = env.db_url("DATABASE_URL")
else:
    # The embedded server starts on this process's first connection (core.platform.database).
    _database = {"NAME": "strata", "USER": "postgres", "HOST": "", "EMBEDDED_PGDATA": str(DATA_DIR / "postgres")}

DATABASES = {
    "default": {
        **_database,
        "ENGINE": "core.platform.database",
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            **_database.get("OPTIONS", {}),
            "pool": _pool,
            # Shown in pg_stat_activity, so operators (and the soak test) can count Strata's connections.
            "application_name": env.str("DB_APPLICATION_NAME", default="strata"),
        },
    }
}
# A pooled connection that has served more schemas than this is replaced when it is returned: a
# backend keeps every schema's catalogue entries it has read (0: never replaced for that).
DATABASE_CONNECTION_MAX_SCHEMAS = env.int("DB_CONNECTION_MAX_SCHEMAS", default=100)
# The kNN search runs as a prepared statement, planned once per pooled connection
# (core.platform.database.prepared); off for a proxy that cannot keep them.
DATABASE_PREPARED_STATEMENTS = env.bool("DB_PREPARED_STATEMENTS", default=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads per process for the database steps of WebSocket handshakes and chat turns (each holds a
# pooled connection while it runs); half as many again record finished answers.
DATABASE_STEP_THREADS = env.int("DATABASE_STEP_THREADS", default=4)
