"""Shared test fixtures.

``reference_dir``: the ZipVoice golden fixture folder, from ``ZIPVOICE_REFERENCE_DIR`` or
``../shared/fixtures/zipvoice-reference`` beside the checkout. Users' clones don't have it, so
tests that need it skip there; under CI (``CI=true``) a missing folder is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def reference_path() -> Path:
    """The fixture folder (it may be missing)."""
    env = os.environ.get("ZIPVOICE_REFERENCE_DIR")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "fixtures" / "zipvoice-reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    path = reference_path()
    if not (path / "golden").is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"ZipVoice reference fixtures missing under CI: {path}")
        pytest.skip(f"ZipVoice reference fixtures not found at {path} (set ZIPVOICE_REFERENCE_DIR)")
    return path
