"""projects, API tokens, per-project artefacts; jobs get a project and an in-flight key

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("scopes", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_api_tokens_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
    )
    op.create_index(op.f("ix_api_tokens_project_id"), "api_tokens", ["project_id"], unique=False)
    op.create_table(
        "project_artefacts",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("artefact_id", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["artefact_id"], ["artefacts.id"], name=op.f("fk_project_artefacts_artefact_id_artefacts")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_project_artefacts_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("project_id", "artefact_id", name=op.f("pk_project_artefacts")),
    )
    # What existed before projects belongs to the default project (open mode's).
    op.execute("INSERT INTO projects (id, name, created_at) VALUES (1, 'default', CURRENT_TIMESTAMP)")
    op.execute(
        "INSERT INTO project_artefacts (project_id, artefact_id, filename, created_at) "
        "SELECT 1, id, filename, created_at FROM artefacts"
    )
    # Plain ALTER TABLE ADD COLUMN (no table rebuild: on SQLite a rebuild of `jobs` would
    # cascade-delete its job_events).
    op.add_column("jobs", sa.Column("project_id", sa.Integer(), server_default=sa.text("1"), nullable=False))
    op.add_column("jobs", sa.Column("inflight_key", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_jobs_project_id"), "jobs", ["project_id"], unique=False)
    op.create_index(op.f("ix_jobs_inflight_key"), "jobs", ["inflight_key"], unique=True)
    if op.get_bind().dialect.name == "postgresql":  # keep the id sequence past the default row
        op.execute("SELECT setval('projects_id_seq', (SELECT max(id) FROM projects))")


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_inflight_key"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_project_id"), table_name="jobs")
    with op.batch_alter_table("jobs", recreate="never") as batch_op:
        batch_op.drop_column("inflight_key")
        batch_op.drop_column("project_id")
    op.drop_table("project_artefacts")
    op.drop_index(op.f("ix_api_tokens_project_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("projects")
