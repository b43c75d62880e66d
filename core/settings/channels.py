"""channels settings."""
