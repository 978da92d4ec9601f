"""Sticky assignment: the same key always lands in the same bucket, in any process."""

from __future__ import annotations

import hashlib

BUCKETS = 10_000
"""Buckets per assignment: percentages resolve to 0.01%."""


def bucket(key: str, salt: str) -> int:
    """A bucket in ``[0, BUCKETS)`` for ``key``, independent per ``salt`` (experiment or flag).

    It depends only on the two strings (sha256), so gateways in different
    processes or hosts agree without sharing state.
    """
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_percent(key: str, salt: str, percent: float) -> bool:
    """True for the first ``percent`` of buckets: raising the percentage keeps everyone
    already included, lowering it drops only the last ones in."""
    return bucket(key, salt) < round(percent * BUCKETS / 100)
