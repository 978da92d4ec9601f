"""Feedback once per query and user; the client's request id beside the query id; shared secrets.

- ``feedback`` gets a ``user_key`` column (``""`` when no user is known) and the
  primary key ``(query_id, kind, user_key)``: one rating and one thumbs per query and
  user, a second one replacing the first. Existing rows take the user key of their
  query; should a table hold two rows for one query, kind and user (the old primary
  key made that impossible, a hand-made table might not), the newest is kept.
- ``queries`` gets ``request_id``: the client's ``X-Request-ID``, kept as a
  correlation id now that the gateway always issues the query id itself.
- ``secrets`` holds what every gateway of the registry must agree on (the key of the
  feedback tokens).

The feedback table is rebuilt (created anew, copied, swapped) on both SQLite and
PostgreSQL: SQLite cannot change a primary key in place.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

REF = 320

_COPY = """
INSERT INTO feedback_new (query_id, kind, user_key, env, ref, value, comment, actor, at)
SELECT query_id, kind, user_key, env, ref, value, comment, actor, at FROM (
    SELECT f.query_id, f.kind, COALESCE(q.user_key, '') AS user_key, f.env, f.ref,
           f.value, f.comment, f.actor, f.at,
           ROW_NUMBER() OVER (
               PARTITION BY f.query_id, f.kind, COALESCE(q.user_key, '')
               ORDER BY f.at DESC, f.value DESC
           ) AS newest
    FROM feedback f JOIN queries q ON q.query_id = f.query_id
) ranked
WHERE newest = 1
"""


def _feedback_table(name: str, pk_name: str) -> None:
    op.create_table(
        name,
        sa.Column(
            "query_id",
            sa.String(64),
            sa.ForeignKey("queries.query_id", name="fk_feedback_query"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("user_key", sa.String(255), nullable=False),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("query_id", "kind", "user_key", name=pk_name),
    )


def upgrade() -> None:
    """Rebuild ``feedback`` keyed by user; add ``queries.request_id`` and ``secrets``."""
    op.add_column("queries", sa.Column("request_id", sa.String(128), nullable=True))
    _feedback_table("feedback_new", "pk_feedback")
    op.execute(_COPY)
    op.drop_index("ix_feedback_ref_at", table_name="feedback")
    op.drop_table("feedback")
    op.rename_table("feedback_new", "feedback")
    op.create_index("ix_feedback_ref_at", "feedback", ["ref", "at"])
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Back to one rating per query and kind (the newest of each survives)."""
    op.drop_table("secrets")
    op.create_table(
        "feedback_old",
        sa.Column(
            "query_id",
            sa.String(64),
            sa.ForeignKey("queries.query_id", name="fk_feedback_query"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("query_id", "kind", name="pk_feedback_old"),
    )
    op.execute(
        """
        INSERT INTO feedback_old (query_id, kind, env, ref, value, comment, actor, at)
        SELECT query_id, kind, env, ref, value, comment, actor, at FROM (
            SELECT f.*, ROW_NUMBER() OVER (
                PARTITION BY f.query_id, f.kind ORDER BY f.at DESC, f.user_key
            ) AS newest FROM feedback f
        ) ranked
        WHERE newest = 1
        """
    )
    op.drop_index("ix_feedback_ref_at", table_name="feedback")
    op.drop_table("feedback")
    op.rename_table("feedback_old", "feedback")
    op.create_index("ix_feedback_ref_at", "feedback", ["ref", "at"])
    op.drop_column("queries", "request_id")
