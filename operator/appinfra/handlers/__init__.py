"""One module per kind: its reconcile function and its CONTROLLER declaration (what it
reconciles, owns and watches). The manager (appinfra/manager.py) runs them all."""

from appinfra.handlers import healthpolicy, ratelimitpolicy, secretbinding, serviceprofile

CONTROLLERS = (
    serviceprofile.CONTROLLER,
    secretbinding.CONTROLLER,
    healthpolicy.CONTROLLER,
    ratelimitpolicy.CONTROLLER,
)

__all__ = ["CONTROLLERS"]
