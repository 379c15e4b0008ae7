"""appinfra: a Kubernetes operator for a service's infrastructure concerns."""

__version__ = "0.1.0"
