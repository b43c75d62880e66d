"""The project wiring as an app: its management commands (up, worker, migrate_platform, jobs_check)
and the operators' admin (config.admin) are found through it."""

from django.apps import AppConfig


class ConfigConfig(AppConfig):
    name = "config"
    verbose_name = "Platform"
