"""The change flow: approvals, pipeline runs, and what alerts did after a promotion.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the approvals, pipeline_runs and alert_actions tables."""
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("source_env", sa.String(32), nullable=True),
        sa.Column("ref", sa.String(320), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("pipeline_run", sa.Integer(), nullable=True),
    )
    op.create_index("ix_approvals_env_state", "approvals", ["env", "state"])
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("candidate", sa.Text(), nullable=False),
        sa.Column("ref", sa.String(320), nullable=True),
        sa.Column("target_env", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failed_stage", sa.String(32), nullable=True),
        sa.Column("stages", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("report_dir", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pipeline_runs_state", "pipeline_runs", ["state"])
    op.create_table(
        "alert_actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("dedupe_key", sa.String(128), nullable=False),
        sa.Column("alertname", sa.String(255), nullable=False),
        sa.Column("ref", sa.String(320), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("env", "dedupe_key", name="uq_alert_actions_dedupe"),
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("alert_actions")
    op.drop_index("ix_pipeline_runs_state", "pipeline_runs")
    op.drop_table("pipeline_runs")
    op.drop_index("ix_approvals_env_state", "approvals")
    op.drop_table("approvals")
