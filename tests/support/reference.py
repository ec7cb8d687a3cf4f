"""Locate the platforms' reference material (../shared/reference), or skip with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = (REPO_ROOT / ".." / "shared" / "reference").resolve()


def reference_dir(*parts: str) -> Path:
    """Return ``../shared/reference/<parts>``; skip the test when it is absent."""
    path = REFERENCE_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference material not found at {path} (it ships beside the repository in ../shared)")
    return path
