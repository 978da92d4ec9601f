"""The initial registry schema: releases, aliases, alias_history, events.

Revision ID: 0001
Revises:
Create Date: 2024-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the four registry tables."""
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_releases_name_version"),
    )
    op.create_table(
        "aliases",
        sa.Column("env", sa.String(32), primary_key=True),
        sa.Column("alias", sa.String(63), primary_key=True),
        sa.Column(
            "release_id",
            sa.Integer(),
            sa.ForeignKey("releases.id", name="fk_aliases_release"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(63), nullable=False),
        sa.Column(
            "from_release_id",
            sa.Integer(),
            sa.ForeignKey("releases.id", name="fk_alias_history_from_release"),
            nullable=True,
        ),
        sa.Column(
            "to_release_id",
            sa.Integer(),
            sa.ForeignKey("releases.id", name="fk_alias_history_to_release"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_alias_history_env_alias", "alias_history", ["env", "alias"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
    )
    op.create_index("ix_events_kind", "events", ["kind"])


def downgrade() -> None:
    """Drop the registry tables (their data is lost)."""
    op.drop_index("ix_events_kind", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_alias_history_env_alias", table_name="alias_history")
    op.drop_table("alias_history")
    op.drop_table("aliases")
    op.drop_table("releases")
