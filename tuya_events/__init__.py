"""tuya-events: consume Tuya's cloud message service with nothing lost and nothing silent."""

__version__ = "0.1.0"
