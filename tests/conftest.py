"""Test-wide settings."""

from hypothesis import HealthCheck, settings

# Property tests check behaviour, not speed: on a busy 2-core CI machine a single
# example can take longer than hypothesis's default 200 ms deadline.
settings.register_profile("appinfra", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("appinfra")
