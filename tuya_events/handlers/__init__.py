"""Handlers: what happens to an event. Built-ins by ``type:`` name, others by entry point.

The handler contract, the one import a plugin needs::

    from tuya_events.handlers import BaseHandler, Handler, HandlerContext, HandlerError
"""

from tuya_events.handlers.base import (
    BaseHandler,
    Handler,
    HandlerContext,
    HandlerError,
    SharedResources,
)

__all__ = ["BaseHandler", "Handler", "HandlerContext", "HandlerError", "SharedResources"]
