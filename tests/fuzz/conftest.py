"""Hypothesis profiles for the fuzz suite (docs/security.md, "Fuzzing").

``ci`` (the default, in ``make test``): modest example counts, no deadline (a shared 2-core
machine), no example database. ``fuzz`` (``make fuzz``, or ``HYPOTHESIS_PROFILE=fuzz``): many
more examples (``FUZZ_EXAMPLES``, default 5000), with a database outside the repository so a
failure found once is tried first on the next run. Both print the blob that replays a failure
(``@reproduce_failure``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5000")),
    deadline=None,
    database=DirectoryBasedExampleDatabase(Path(tempfile.gettempdir()) / "ressonance-fuzz-db"),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
