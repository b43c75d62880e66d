"""Per-tenant single sign-on: the configuration an owner sets, and OpenID Connect sign-in."""
