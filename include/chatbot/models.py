"""The chatbot's PostgreSQL tables as SQLAlchemy models: the source of truth for Alembic.

Seven tables, as the original service's database guide lists them. Beyond its column lists:

* every table has ``created_at``; the rows that change (users, sessions, messages, qualified_leads,
  human_handoffs) also have ``updated_at``, kept current by a trigger (revision 001), so the analytics
  copy can find changed rows with a keyset cursor on ``(updated_at, id)`` whoever wrote them;
* JSON documents are ``JSONB``;
* foreign keys cascade on delete, so an LGPD deletion of a user removes everything that belongs to them;
  ``qualified_leads.session_id`` is the session's public ``session_id`` string, as in the guide, and
  refers to ``sessions.session_id``.

Indexes serve the common queries (README, chatbot section): a user's sessions, a session's messages in
order, changed messages in order (the analytics cursor), sessions to expire, leads to contact, open
handoffs, users to review for retention.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NOW = sa.text("now()")


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _created() -> Mapped[dt.datetime]:
    return mapped_column(sa.DateTime(timezone=True), nullable=False, server_default=NOW)


def _updated() -> Mapped[dt.datetime]:
    return mapped_column(sa.DateTime(timezone=True), nullable=False, server_default=NOW)


def _json(default: str = "'{}'::jsonb") -> Mapped[Any]:
    return mapped_column(JSONB, nullable=False, server_default=sa.text(default))


class User(Base):
    """A WhatsApp user; ``consent_given``/``consent_timestamp`` record the LGPD consent."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    phone_number: Mapped[str] = mapped_column(sa.String(32), nullable=False, unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(255))
    consent_given: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.false())
    consent_timestamp: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()
    is_active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.true())
    __table_args__ = (sa.Index(None, "consent_given", "updated_at"),)


class Session(Base):
    """A conversation; ``turn_id`` makes turn processing idempotent, ``expires_at`` is its TTL."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(64), nullable=False, unique=True)
    user_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    state: Mapped[str] = mapped_column(sa.String(50), nullable=False, server_default="greeting")
    turn_id: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    user_profile: Mapped[Any] = _json()
    current_recommendations: Mapped[Any] = _json("'[]'::jsonb")
    qualification_score: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()
    expires_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    __table_args__ = (sa.Index(None, "expires_at", postgresql_where=sa.text("state <> 'expired'")),)


class Message(Base):
    """One message of a session: ``role`` is ``user`` or ``assistant``; NLP results ride along."""

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    message_id: Mapped[str] = mapped_column(sa.String(64), nullable=False, unique=True)
    session_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False
    )
    role: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    content: Mapped[str] = mapped_column(sa.Text, nullable=False)
    message_type: Mapped[str] = mapped_column(sa.String(32), nullable=False, server_default="text")
    intent: Mapped[str | None] = mapped_column(sa.String(100))
    sentiment: Mapped[str | None] = mapped_column(sa.String(32))
    confidence: Mapped[float | None] = mapped_column(sa.Float)
    entities: Mapped[Any] = _json()
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()
    __table_args__ = (
        sa.CheckConstraint("role IN ('user', 'assistant')", name="role"),
        sa.CheckConstraint("confidence IS NULL OR confidence BETWEEN 0 AND 1", name="confidence"),
        sa.Index(None, "session_id", "created_at"),
        sa.Index(None, "updated_at", "id"),
        sa.Index(None, "created_at"),
    )


class QualifiedLead(Base):
    """A lead handed to dealerships; ``contacted``/``converted`` track what became of it."""

    __tablename__ = "qualified_leads"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    session_id: Mapped[str | None] = mapped_column(
        sa.String(64), sa.ForeignKey("sessions.session_id", ondelete="CASCADE"), index=True
    )
    qualification_score: Mapped[float] = mapped_column(sa.Float, nullable=False)
    priority: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="medium")
    user_profile: Mapped[Any] = _json()
    recommended_cars: Mapped[Any] = _json("'[]'::jsonb")
    contacted: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.false())
    converted: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, server_default=sa.false())
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()
    __table_args__ = (sa.Index(None, "contacted", "priority"), sa.Index(None, "created_at"))


class CarInteraction(Base):
    """A user's view, like, dislike or comparison of a car."""

    __tablename__ = "car_interactions"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    car_id: Mapped[str] = mapped_column(sa.String(64), nullable=False, index=True)
    interaction_type: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    feedback: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = _created()
    __table_args__ = (
        sa.CheckConstraint(
            "interaction_type IN ('view', 'like', 'dislike', 'compare')", name="interaction_type"
        ),
    )


class HumanHandoff(Base):
    """A transfer of a session to a human agent, with its outcome."""

    __tablename__ = "human_handoffs"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    reason: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    context: Mapped[Any] = _json()
    status: Mapped[str] = mapped_column(sa.String(32), nullable=False, server_default="pending")
    assigned_to: Mapped[str | None] = mapped_column(sa.String(255))
    rating: Mapped[int | None] = mapped_column(sa.SmallInteger)
    feedback: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()
    __table_args__ = (
        sa.CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating"),
        sa.Index(None, "status", "created_at"),
    )


class MetricsDaily(Base):
    """One row per day, upserted by the analytics DAG (definitions: README, chatbot metrics)."""

    __tablename__ = "metrics_daily"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    date: Mapped[dt.date] = mapped_column(sa.Date, nullable=False, unique=True)
    total_messages: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    total_sessions: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    total_users: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    total_qualified_leads: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    total_handoffs: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    avg_response_time_ms: Mapped[float | None] = mapped_column(sa.Float)
    avg_qualification_score: Mapped[float | None] = mapped_column(sa.Float)
    nlp_accuracy: Mapped[float | None] = mapped_column(sa.Float)
    conversion_rate: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _updated()


metadata = Base.metadata
TABLES = [
    "users",
    "sessions",
    "messages",
    "qualified_leads",
    "car_interactions",
    "human_handoffs",
    "metrics_daily",
]
#: Tables whose ``updated_at`` the trigger of revision 001 keeps current.
TOUCHED_TABLES = ["users", "sessions", "messages", "qualified_leads", "human_handoffs", "metrics_daily"]
