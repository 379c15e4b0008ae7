"""Metrics, structured logging and Kubernetes Events."""
