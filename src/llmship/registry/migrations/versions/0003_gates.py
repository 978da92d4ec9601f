"""Release gates: gate runs (eval, load test) and the output cache.

Revision ID: 0003
Revises: 0002
Create Date: 2024-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

REF = 320  # name@version: a 63-character name, '@' and a 255-character version


def upgrade() -> None:
    """Create the gate_runs and output_cache tables."""
    op.create_table(
        "gate_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column(
            "release_id",
            sa.Integer(),
            sa.ForeignKey("releases.id", name="fk_gate_runs_release"),
            nullable=False,
        ),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("baseline_ref", sa.String(REF), nullable=True),
        sa.Column("env", sa.String(32), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
    )
    op.create_index("ix_gate_runs_ref_kind", "gate_runs", ["ref", "kind"])
    op.create_table(
        "output_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_output_cache_ref", "output_cache", ["ref"])


def downgrade() -> None:
    """Drop the gate tables (their data is lost)."""
    op.drop_index("ix_output_cache_ref", table_name="output_cache")
    op.drop_table("output_cache")
    op.drop_index("ix_gate_runs_ref_kind", table_name="gate_runs")
    op.drop_table("gate_runs")
