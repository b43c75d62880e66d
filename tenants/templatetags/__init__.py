"""Template tags of the tenants app."""
