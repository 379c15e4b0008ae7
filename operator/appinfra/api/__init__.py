"""The appinfra API: pydantic models of the four kinds and the operator configuration.

These models are the single source of truth: the CRD manifests (crds.py), the
offline `appinfra validate` command (validation.py) and the operator's handlers
all derive from them, so a field or rule is defined exactly once.
"""
