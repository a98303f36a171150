"""Shared pytest fixtures.

The suite runs against the installed wheel (``scripts/test`` builds and
installs it) and uses real ZODB from PyPI as the reference implementation.
Area-specific fixtures live in the test modules of that area, or in this file
under the area's section marker.
"""

import os
import sys

import pytest


HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import zodbgen  # noqa: E402


@pytest.fixture
def make_storage(tmp_path):
    """Factory: ``make_storage(name="db", **generate_kwargs)`` creates a real
    ZODB FileStorage (with blobs unless ``blobs=False``) under ``tmp_path``
    and returns zodbgen's description dict (path, end, size, last_tid,
    objects)."""

    def make(name="db", **kwargs):
        return zodbgen.generate(str(tmp_path / name), **kwargs)

    return make


# --- repozo (issue 3) ---


# --- blobs (issue 4) ---


# --- recipe (issue 5) ---
