"""The ``tuya-events`` command: one module per subcommand, wired together in :mod:`.main`."""
