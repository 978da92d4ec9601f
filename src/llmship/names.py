"""The shape of a release name, shared by release specs and the settings that name
releases (for example ``replicas`` by ``NAME``), below both of them."""

from __future__ import annotations

__all__ = ["NAME_PATTERN", "REF_PATTERN"]

NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
"""A release name: lowercase letters, digits, ``.``, ``_`` and ``-``, 1 to 63 characters,
starting and ending with a letter or digit."""

REF_PATTERN = (
    r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?@v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
)
"""``NAME@VERSION`` as the HTTP APIs document it (a semantic version; the code checks
the version in full)."""
