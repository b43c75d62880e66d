"""stripe settings."""
