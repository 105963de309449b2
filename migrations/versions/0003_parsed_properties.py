"""parsed properties: what the dashboard shows of a property, stored once at submission

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parsed_properties",
        sa.Column("key", sa.String(length=96), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_parsed_properties")),
    )


def downgrade() -> None:
    op.drop_table("parsed_properties")
