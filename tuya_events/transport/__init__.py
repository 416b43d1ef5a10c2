"""Where messages come from: Tuya's Pulsar service, or an in-memory stand-in. Never a handler."""
