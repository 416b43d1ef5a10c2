"""Tuya's wire facts: credentials, endpoints, the message envelope, its decryption, typed events."""
