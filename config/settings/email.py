"""Outgoing e-mail: ``EMAIL_URL`` (smtp://, smtp+tls://, smtps://, consolemail://); unset, every
message is an .eml file in STRATA_DATA_DIR/mail/. Mail is sent by jobs, never inside a request."""

from .env import DATA_DIR, env

# "console" is accepted as a short form of consolemail://.
_EMAIL_ALIASES = {"console": "consolemail://", "file": ""}
EMAIL_URL = _EMAIL_ALIASES.get(env.str("EMAIL_URL", default=""), env.str("EMAIL_URL", default=""))
EMAIL_FILE_PATH = str(DATA_DIR / "mail")
if EMAIL_URL:
    globals().update(env.email_url_config(EMAIL_URL))
else:
    # One message per .eml file (Django's file backend writes a .log per connection).
    EMAIL_BACKEND = "core.platform.mail.EmlFileBackend"

DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Strata <no-reply@localhost>")
# Where a suspended or closed workspace's page sends people (a mailto link); unset, it says to ask
# whoever runs the server.
SUPPORT_EMAIL = env.str("SUPPORT_EMAIL", default="")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=20)
# At most this many messages of one kind (invitation, reset, workspace list, ...) to one address per
# hour: beyond it a request still gets its usual answer and the job sends nothing.
MAIL_PER_RECIPIENT_PER_HOUR = env.int("MAIL_PER_RECIPIENT_PER_HOUR", default=5)
