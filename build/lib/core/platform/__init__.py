"""The shared platform pieces every app builds on: errors, API base classes, jobs, database."""
