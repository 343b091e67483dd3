"""The chatbot's seven PostgreSQL tables, their indexes, and the trigger that keeps ``updated_at`` current.

Revision ID: 001
Revises:
Create Date: 2026-12-05 17:14:33.836769

The trigger sets ``updated_at = now()`` on every UPDATE, whoever writes: the analytics copy finds
changed rows by ``(updated_at, id)``, so an application that forgets to touch it cannot hide a change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen here, not imported from the models: a revision must keep meaning what it meant when written.
TOUCHED_TABLES = ["users", "sessions", "messages", "qualified_leads", "human_handoffs", "metrics_daily"]
TOUCH_FUNCTION = """
CREATE OR REPLACE FUNCTION chatbot_touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "metrics_daily",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("total_messages", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_sessions", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_users", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_qualified_leads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_handoffs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("avg_response_time_ms", sa.Float(), nullable=True),
        sa.Column("avg_qualification_score", sa.Float(), nullable=True),
        sa.Column("nlp_accuracy", sa.Float(), nullable=True),
        sa.Column("conversion_rate", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics_daily")),
        sa.UniqueConstraint("date", name=op.f("uq_metrics_daily_date")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("phone_number", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("consent_given", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("consent_timestamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("phone_number", name=op.f("uq_users_phone_number")),
    )
    op.create_index(
        op.f("ix_users_consent_given_updated_at"), "users", ["consent_given", "updated_at"], unique=False
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=50), server_default="greeting", nullable=False),
        sa.Column("turn_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "user_profile",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "current_recommendations",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("qualification_score", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("session_id", name=op.f("uq_sessions_session_id")),
    )
    op.create_index(
        op.f("ix_sessions_expires_at"),
        "sessions",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("state <> 'expired'"),
    )
    op.create_index(op.f("ix_sessions_user_id"), "sessions", ["user_id"], unique=False)
    op.create_table(
        "car_interactions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("car_id", sa.String(length=64), nullable=False),
        sa.Column("interaction_type", sa.String(length=16), nullable=False),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "interaction_type IN ('view', 'like', 'dislike', 'compare')",
            name=op.f("ck_car_interactions_interaction_type"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_car_interactions_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_car_interactions")),
    )
    op.create_index(op.f("ix_car_interactions_car_id"), "car_interactions", ["car_id"], unique=False)
    op.create_index(op.f("ix_car_interactions_session_id"), "car_interactions", ["session_id"], unique=False)
    op.create_table(
        "human_handoffs",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column(
            "context",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=32), server_default="pending", nullable=False),
        sa.Column("assigned_to", sa.String(length=255), nullable=True),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name=op.f("ck_human_handoffs_rating")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_human_handoffs_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_human_handoffs")),
    )
    op.create_index(op.f("ix_human_handoffs_session_id"), "human_handoffs", ["session_id"], unique=False)
    op.create_index(
        op.f("ix_human_handoffs_status_created_at"), "human_handoffs", ["status", "created_at"], unique=False
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("message_type", sa.String(length=32), server_default="text", nullable=False),
        sa.Column("intent", sa.String(length=100), nullable=True),
        sa.Column("sentiment", sa.String(length=32), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column(
            "entities",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant')", name=op.f("ck_messages_role")),
        sa.CheckConstraint(
            "confidence IS NULL OR confidence BETWEEN 0 AND 1", name=op.f("ck_messages_confidence")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_messages_session_id_sessions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("message_id", name=op.f("uq_messages_message_id")),
    )
    op.create_index(op.f("ix_messages_created_at"), "messages", ["created_at"], unique=False)
    op.create_index(
        op.f("ix_messages_session_id_created_at"), "messages", ["session_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_messages_updated_at_id"), "messages", ["updated_at", "id"], unique=False)
    op.create_table(
        "qualified_leads",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("qualification_score", sa.Float(), nullable=False),
        sa.Column("priority", sa.String(length=16), server_default="medium", nullable=False),
        sa.Column(
            "user_profile",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "recommended_cars",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("contacted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("converted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.session_id"],
            name=op.f("fk_qualified_leads_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_qualified_leads_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qualified_leads")),
    )
    op.create_index(
        op.f("ix_qualified_leads_contacted_priority"),
        "qualified_leads",
        ["contacted", "priority"],
        unique=False,
    )
    op.create_index(op.f("ix_qualified_leads_created_at"), "qualified_leads", ["created_at"], unique=False)
    op.create_index(op.f("ix_qualified_leads_session_id"), "qualified_leads", ["session_id"], unique=False)
    op.create_index(op.f("ix_qualified_leads_user_id"), "qualified_leads", ["user_id"], unique=False)
    op.execute(TOUCH_FUNCTION)
    for table in TOUCHED_TABLES:
        op.execute(
            f"CREATE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION chatbot_touch_updated_at()"
        )


def downgrade() -> None:
    for table in TOUCHED_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_updated_at ON {table}")
    op.execute("DROP FUNCTION IF EXISTS chatbot_touch_updated_at()")
    op.drop_index(op.f("ix_qualified_leads_user_id"), table_name="qualified_leads")
    op.drop_index(op.f("ix_qualified_leads_session_id"), table_name="qualified_leads")
    op.drop_index(op.f("ix_qualified_leads_created_at"), table_name="qualified_leads")
    op.drop_index(op.f("ix_qualified_leads_contacted_priority"), table_name="qualified_leads")
    op.drop_table("qualified_leads")
    op.drop_index(op.f("ix_messages_updated_at_id"), table_name="messages")
    op.drop_index(op.f("ix_messages_session_id_created_at"), table_name="messages")
    op.drop_index(op.f("ix_messages_created_at"), table_name="messages")
    op.drop_table("messages")
    op.drop_index(op.f("ix_human_handoffs_status_created_at"), table_name="human_handoffs")
    op.drop_index(op.f("ix_human_handoffs_session_id"), table_name="human_handoffs")
    op.drop_table("human_handoffs")
    op.drop_index(op.f("ix_car_interactions_session_id"), table_name="car_interactions")
    op.drop_index(op.f("ix_car_interactions_car_id"), table_name="car_interactions")
    op.drop_table("car_interactions")
    op.drop_index(op.f("ix_sessions_user_id"), table_name="sessions")
    op.drop_index(
        op.f("ix_sessions_expires_at"), table_name="sessions", postgresql_where=sa.text("state <> 'expired'")
    )
    op.drop_table("sessions")
    op.drop_index(op.f("ix_users_consent_given_updated_at"), table_name="users")
    op.drop_table("users")
    op.drop_table("metrics_daily")
