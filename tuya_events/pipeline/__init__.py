"""The pipeline: decode, route, handle, acknowledge; with ordering, retries, dead letters."""
