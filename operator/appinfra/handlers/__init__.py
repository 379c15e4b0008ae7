"""kopf handlers, one module per kind; importing this package registers them all."""

from appinfra.handlers import watches

__all__ = ["watches"]
