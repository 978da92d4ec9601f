"""Rollouts: their state, the intents people and alerts leave, analysis measurements.

Revision ID: 0004
Revises: 0003
Create Date: 2024-12-19
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

REF = 320  # name@version: a 63-character name, '@' and a 255-character version


def upgrade() -> None:
    """Create the rollouts, rollout_intents and analysis_measurements tables."""
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("candidate", sa.String(REF), nullable=False),
        sa.Column("stable", sa.String(REF), nullable=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("pause_reason", sa.Text(), nullable=True),
        sa.Column("abort_reason", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("active_env", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.UniqueConstraint("active_env", name="uq_rollouts_active_env"),
    )
    op.create_index("ix_rollouts_env", "rollouts", ["env", "id"])
    op.create_table(
        "rollout_intents",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "rollout_id",
            sa.Integer(),
            sa.ForeignKey("rollouts.id", name="fk_rollout_intents_rollout"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.UniqueConstraint("rollout_id", "dedupe_key", name="uq_rollout_intents_dedupe"),
    )
    op.create_index("ix_rollout_intents_rollout", "rollout_intents", ["rollout_id", "consumed_at"])
    op.create_table(
        "analysis_measurements",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "rollout_id",
            sa.Integer(),
            sa.ForeignKey("rollouts.id", name="fk_analysis_measurements_rollout"),
            nullable=False,
        ),
        sa.Column("run", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(63), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_analysis_measurements_rollout_run", "analysis_measurements", ["rollout_id", "run"]
    )


def downgrade() -> None:
    """Drop the rollout tables (their data is lost)."""
    op.drop_index("ix_analysis_measurements_rollout_run", table_name="analysis_measurements")
    op.drop_table("analysis_measurements")
    op.drop_index("ix_rollout_intents_rollout", table_name="rollout_intents")
    op.drop_table("rollout_intents")
    op.drop_index("ix_rollouts_env", table_name="rollouts")
    op.drop_table("rollouts")
