"""celery settings."""
