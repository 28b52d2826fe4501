"""``require``: a test whose real dependency is missing skips here, and fails on CI.

CI (``CI`` set) installs every dependency the suite needs, so there a missing one means a check
silently stopped running: that is a failure, not a skip.
"""

from __future__ import annotations

import os

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(present: bool, what: str) -> None:
    """Skip the calling test or fixture unless ``present`` (fail it instead on CI).

    ``what`` says what is missing, e.g. ``"chromium at /usr/bin/chromium"``.
    """
    if present:
        return
    if on_ci():
        pytest.fail(f"missing: {what} (CI is set, so this is a failure)", pytrace=False)
    pytest.skip(f"missing: {what}")
