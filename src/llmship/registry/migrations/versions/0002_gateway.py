"""What the gateway needs: traffic policies, endpoints, queries, feedback, flags.

Revision ID: 0002
Revises: 0001
Create Date: 2024-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

REF = 320  # name@version: a 63-character name, '@' and a 255-character version


def upgrade() -> None:
    """Create the five gateway tables."""
    op.create_table(
        "traffic_policies",
        sa.Column("env", sa.String(32), primary_key=True),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
    )
    op.create_table(
        "endpoints",
        sa.Column("env", sa.String(32), primary_key=True),
        sa.Column("ref", sa.String(REF), primary_key=True),
        sa.Column("url", sa.String(1024), primary_key=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "queries",
        sa.Column("query_id", sa.String(64), primary_key=True),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("variant", sa.String(96), nullable=False),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_key", sa.String(255), nullable=True),
    )
    op.create_index("ix_queries_env_ref_at", "queries", ["env", "ref", "at"])
    op.create_table(
        "feedback",
        sa.Column(
            "query_id",
            sa.String(64),
            sa.ForeignKey("queries.query_id", name="fk_feedback_query"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_ref_at", "feedback", ["ref", "at"])
    op.create_table(
        "flags",
        sa.Column("env", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("conditions", sa.Text(), nullable=False),
        sa.Column("release", sa.String(REF), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    """Drop the gateway tables (their data is lost)."""
    op.drop_table("flags")
    op.drop_index("ix_feedback_ref_at", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_queries_env_ref_at", table_name="queries")
    op.drop_table("queries")
    op.drop_table("endpoints")
    op.drop_table("traffic_policies")
