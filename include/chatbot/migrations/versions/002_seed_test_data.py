"""Seed data for testing: 3 users, 2 sessions, 4 messages, 1 qualified lead.

Revision ID: 002
Revises: 001

The original service's ``002_seed_test_data``. Every row has a fixed natural key (phone number,
``session_id``, ``message_id``), so the downgrade deletes exactly these rows and nothing a user
created meanwhile; the upgrade skips rows already present, so re-applying after a partial restore works.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "002"
down_revision = "001"
branch_labels = None
depends_on = None

USERS = [
    {"phone_number": "+5511999990001", "name": "Ana Souza", "email": "ana@example.com", "consent": True},
    {"phone_number": "+5511999990002", "name": "Bruno Lima", "email": "bruno@example.com", "consent": True},
    {"phone_number": "+5511999990003", "name": "Carla Dias", "email": None, "consent": False},
]
SESSIONS = [
    {
        "session_id": "seed-session-0001",
        "phone_number": "+5511999990001",
        "state": "recommendation",
        "turn_id": 2,
        "user_profile": {"budget_max": 80000, "usage": "family", "city": "Sao Paulo"},
        "current_recommendations": ["car-001", "car-002"],
        "qualification_score": 0.82,
    },
    {
        "session_id": "seed-session-0002",
        "phone_number": "+5511999990002",
        "state": "qualification",
        "turn_id": 1,
        "user_profile": {"budget_max": 120000},
        "current_recommendations": [],
        "qualification_score": 0.40,
    },
]
MESSAGES = [
    (
        "seed-msg-0001",
        "seed-session-0001",
        "user",
        "Quero um carro para a familia ate 80 mil",
        "search_car",
        "positive",
        0.93,
        {"budget_max": 80000, "usage": "family"},
        0,
    ),
    (
        "seed-msg-0002",
        "seed-session-0001",
        "assistant",
        "Encontrei dois SUVs ate R$ 80.000 para voce",
        None,
        None,
        None,
        {},
        2,
    ),
    (
        "seed-msg-0003",
        "seed-session-0002",
        "user",
        "Oi, queria ver um sedan automatico",
        "search_car",
        "neutral",
        0.71,
        {"body_type": "sedan", "transmission": "automatic"},
        0,
    ),
    (
        "seed-msg-0004",
        "seed-session-0002",
        "assistant",
        "Claro! Qual e o seu orcamento?",
        None,
        None,
        None,
        {},
        3,
    ),
]  # (message_id, session_id, role, content, intent, sentiment, confidence, entities, seconds after start)
LEAD = {
    "phone_number": "+5511999990001",
    "session_id": "seed-session-0001",
    "qualification_score": 0.82,
    "priority": "high",
    "user_profile": {"budget_max": 80000, "usage": "family", "city": "Sao Paulo"},
    "recommended_cars": ["car-001", "car-002"],
}
PHONES = [u["phone_number"] for u in USERS]


def upgrade() -> None:
    bind = op.get_bind()
    for u in USERS:
        bind.execute(
            sa.text(
                "INSERT INTO users (phone_number, name, email, consent_given, consent_timestamp) "
                "VALUES (:phone, :name, :email, :consent, CASE WHEN :consent THEN now() END) "
                "ON CONFLICT (phone_number) DO NOTHING"
            ),
            {"phone": u["phone_number"], "name": u["name"], "email": u["email"], "consent": u["consent"]},
        )
    for s in SESSIONS:
        bind.execute(
            sa.text(
                "INSERT INTO sessions (session_id, user_id, state, turn_id, user_profile, "
                "current_recommendations, qualification_score, expires_at) "
                "SELECT :sid, id, :state, :turn, CAST(:profile AS jsonb), CAST(:recs AS jsonb), :score, "
                "now() + interval '24 hours' FROM users WHERE phone_number = :phone "
                "ON CONFLICT (session_id) DO NOTHING"
            ),
            {
                "sid": s["session_id"],
                "state": s["state"],
                "turn": s["turn_id"],
                "profile": json.dumps(s["user_profile"]),
                "recs": json.dumps(s["current_recommendations"]),
                "score": s["qualification_score"],
                "phone": s["phone_number"],
            },
        )
    for mid, sid, role, content, intent, sentiment, confidence, entities, seconds in MESSAGES:
        bind.execute(
            sa.text(
                "INSERT INTO messages (message_id, session_id, role, content, intent, sentiment, "
                "confidence, entities, created_at, updated_at) "
                "SELECT :mid, s.id, :role, :content, :intent, :sentiment, :confidence, "
                "CAST(:entities AS jsonb), s.created_at + make_interval(secs => :seconds), "
                "s.created_at + make_interval(secs => :seconds) "
                "FROM sessions s WHERE s.session_id = :sid ON CONFLICT (message_id) DO NOTHING"
            ),
            {
                "mid": mid,
                "sid": sid,
                "role": role,
                "content": content,
                "intent": intent,
                "sentiment": sentiment,
                "confidence": confidence,
                "entities": json.dumps(entities),
                "seconds": seconds,
            },
        )
    bind.execute(
        sa.text(
            "INSERT INTO qualified_leads (user_id, session_id, qualification_score, priority, "
            "user_profile, recommended_cars) "
            "SELECT u.id, CAST(:sid AS varchar), :score, :priority, CAST(:profile AS jsonb), CAST(:cars AS jsonb) "
            "FROM users u WHERE u.phone_number = :phone AND NOT EXISTS "
            "(SELECT 1 FROM qualified_leads q WHERE q.user_id = u.id AND q.session_id = CAST(:sid AS varchar))"
        ),
        {
            "sid": LEAD["session_id"],
            "score": LEAD["qualification_score"],
            "priority": LEAD["priority"],
            "profile": json.dumps(LEAD["user_profile"]),
            "cars": json.dumps(LEAD["recommended_cars"]),
            "phone": LEAD["phone_number"],
        },
    )


def downgrade() -> None:
    """Delete exactly the seed rows: the lead, messages and sessions by their keys, then the users
    (only when nothing else of theirs exists, so a real conversation is never lost to a downgrade)."""
    bind = op.get_bind()
    params = {
        "sid": LEAD["session_id"],
        "phone": LEAD["phone_number"],
        "mids": [m[0] for m in MESSAGES],
        "sids": [s["session_id"] for s in SESSIONS],
        "phones": PHONES,
    }
    bind.execute(
        sa.text(
            "DELETE FROM qualified_leads q USING users u WHERE q.user_id = u.id "
            "AND u.phone_number = :phone AND q.session_id = :sid"
        ),
        params,
    )
    bind.execute(sa.text("DELETE FROM messages WHERE message_id = ANY(:mids)"), params)
    bind.execute(
        sa.text(
            "DELETE FROM sessions s WHERE s.session_id = ANY(:sids) "
            "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.id)"
        ),
        params,
    )
    bind.execute(
        sa.text(
            "DELETE FROM users u WHERE u.phone_number = ANY(:phones) "
            "AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = u.id) "
            "AND NOT EXISTS (SELECT 1 FROM qualified_leads q WHERE q.user_id = u.id)"
        ),
        params,
    )
