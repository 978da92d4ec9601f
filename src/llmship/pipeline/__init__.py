"""The change flow: promotion between environments with approvals, and
``llmship pipeline run`` (tests, gates, release, staging, approval, production)."""
