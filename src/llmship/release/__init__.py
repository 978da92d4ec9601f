"""Release specs, semantic versions and weight files."""

from llmship.release.spec import ReleaseSpec, load_spec, parse_ref, parse_spec

__all__ = ["ReleaseSpec", "load_spec", "parse_ref", "parse_spec"]
