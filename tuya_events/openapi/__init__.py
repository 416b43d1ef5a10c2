"""Tuya's signed OpenAPI: what the ``action`` handler and ``tuya-events api`` call it with.

- :mod:`~tuya_events.openapi.signing`: the string-to-sign and the ``sign`` (current and legacy).
- :mod:`~tuya_events.openapi.tokens`: access tokens, refreshed ahead of expiry, one at a time.
- :mod:`~tuya_events.openapi.ratelimit`: a token bucket per endpoint class.
- :mod:`~tuya_events.openapi.errors`: :class:`OpenApiError`, what is retried, and the hints.
- :mod:`~tuya_events.openapi.client`: :class:`OpenApiClient`, which puts them together.
"""

from tuya_events.openapi.client import Credentials, OpenApiClient, OpenApiOptions
from tuya_events.openapi.errors import OpenApiError

__all__ = ["Credentials", "OpenApiClient", "OpenApiError", "OpenApiOptions"]
