"""Configuration: one YAML file -> validated, typed :class:`Settings`."""

from tuya_events.config.errors import ConfigError
from tuya_events.config.loader import find_config_file, load_settings
from tuya_events.config.settings import Settings

__all__ = ["ConfigError", "Settings", "find_config_file", "load_settings"]
