"""Hypothesis profiles for the property tests, chosen once at import.

- "dev" (default): random examples, enough to find trouble on a developer's machine.
- "ci" (when the environment variable CI is set): a fixed number of examples, derandomized, so
  that a CI run is bounded and repeatable.
- "thorough": many random examples, to hunt for trouble by hand.
- "sanitize" (.ci/run's sanitized stage): few examples, derandomized; every example runs under
  AddressSanitizer, which is slow.
FUSEDMLP_HYPOTHESIS_PROFILE names a profile explicitly and wins over CI.
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
               print_blob=True)

settings.register_profile("dev", max_examples=40, **_COMMON)
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, **_COMMON)
settings.register_profile("thorough", max_examples=400, **_COMMON)
settings.register_profile("sanitize", max_examples=6, derandomize=True, database=None, **_COMMON)


def chosen_profile():
    explicit = os.environ.get("FUSEDMLP_HYPOTHESIS_PROFILE")
    if explicit:
        return explicit
    return "ci" if os.environ.get("CI") else "dev"


settings.load_profile(chosen_profile())
