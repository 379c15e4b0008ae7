"""The machinery every kind's reconciler shares (see runtime.py for its layers)."""

from appinfra.controller.declaration import Controller, Watch, same_target
from appinfra.controller.runtime import Runtime
from appinfra.controller.status import describe_changes, now, retry
from appinfra.controller.writes import Taken

__all__ = [
    "Controller",
    "Runtime",
    "Taken",
    "Watch",
    "describe_changes",
    "now",
    "retry",
    "same_target",
]
