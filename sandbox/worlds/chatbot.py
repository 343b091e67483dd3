"""Synthetic WhatsApp chatbot conversations: two users, three sessions over two days, leads, a handoff.

Small and deterministic, with fixed timestamps, so the analytics tests know exactly what the copy,
the response times and the daily metrics must be (see ``EXPECTED_METRICS``).
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

DAY1 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
DAY2 = DAY1 + dt.timedelta(days=1)

USERS = [(1, "+5511990000001", "Ana"), (2, "+5511990000002", "Bruno")]
#: session id, user id, state, turn, profile, created
SESSIONS = [
    ("s-ana-1", 1, "recommending", 2, {"budget": 80000, "use": "family"}, DAY1),
    ("s-bruno-1", 2, "qualified", 2, {"budget": 120000}, DAY1),
    ("s-ana-2", 1, "greeting", 1, {}, DAY2),
]
#: message id, session, role, content, intent, confidence, entities, seconds after the session start
MESSAGES = [
    ("m1", "s-ana-1", "user", "Quero um SUV para a família até 80 mil", "buy_car", 0.9, {"type": "SUV"}, 0),
    ("m2", "s-ana-1", "assistant", "Tenho três SUVs nessa faixa de preço.", None, None, {}, 2),
    ("m3", "s-ana-1", "user", "Prefiro automático e na cor prata", "refine", 0.7, {"color": "prata"}, 60),
    ("m4", "s-ana-1", "assistant", "O Creta automático prata cabe no orçamento.", None, None, {}, 64),
    ("m5", "s-bruno-1", "user", "Qual o preço do Corolla híbrido?", "price", 0.8, {"model": "Corolla"}, 0),
    ("m6", "s-bruno-1", "assistant", "O Corolla híbrido sai por 118 mil.", None, None, {}, 3),
    ("m7", "s-ana-2", "user", "Oi, voltei para ver o SUV", "greeting", 0.6, {"type": "SUV"}, 0),
    ("m8", "s-ana-2", "assistant", "Olá Ana! Vamos continuar.", None, None, {}, 1),
    ("m9", "s-ana-2", "user", "Pode ser diesel também", "refine", 1.0, {"fuel": "diesel"}, 30),
]
#: session, user, score, converted, created
LEADS = [("s-ana-1", 1, 0.8, True, DAY1), ("s-bruno-1", 2, 0.6, False, DAY1)]
HANDOFFS = [("s-bruno-1", "wants a test drive", DAY1 + dt.timedelta(minutes=5))]

#: What chatbot_analytics must write to metrics_daily for the world above.
EXPECTED_METRICS = {
    "2026-03-02": {
        "total_messages": 6,
        "total_sessions": 2,
        "total_users": 2,
        "total_qualified_leads": 2,
        "total_handoffs": 1,
        "avg_response_time_ms": (2000 + 4000 + 3000) / 3,
        "avg_qualification_score": 0.7,
        "nlp_accuracy": (0.9 + 0.7 + 0.8) / 3,
        "conversion_rate": 0.5,
    },
    "2026-03-03": {
        "total_messages": 3,
        "total_sessions": 1,
        "total_users": 1,
        "total_qualified_leads": 0,
        "total_handoffs": 0,
        "avg_response_time_ms": 1000.0,  # m9 has no reply yet: it counts for no average
        "avg_qualification_score": None,
        "nlp_accuracy": (0.6 + 1.0) / 2,
        "conversion_rate": None,
    },
}


def populate(engine: sa.Engine) -> None:
    """Insert the world into a migrated (revision 001) chatbot database."""
    with engine.begin() as conn:
        users = {}
        for uid, phone, name in USERS:
            users[uid] = conn.scalar(
                sa.text(
                    "INSERT INTO users (phone_number, name, consent_given) VALUES (:p, :n, true) RETURNING id"
                ),
                {"p": phone, "n": name},
            )
        ids = {}
        for sid, uid, state, turn, profile, created in SESSIONS:
            key = conn.scalar(
                sa.text(
                    "INSERT INTO sessions (session_id, user_id, state, turn_id, user_profile, created_at,"
                    " updated_at) VALUES (:s, :u, :st, :t, CAST(:p AS jsonb), :c, :c) RETURNING id"
                ),
                {"s": sid, "u": users[uid], "st": state, "t": turn, "p": json.dumps(profile), "c": created},
            )
            ids[sid] = (key, created)
        for mid, sid, role, content, intent, conf, ents, after in MESSAGES:
            at = ids[sid][1] + dt.timedelta(seconds=after)
            conn.execute(
                sa.text(
                    "INSERT INTO messages (message_id, session_id, role, content, intent, confidence,"
                    " entities, created_at, updated_at)"
                    " VALUES (:m, :s, :r, :c, :i, :cf, CAST(:e AS jsonb), :at, :at)"
                ),
                {
                    "m": mid,
                    "s": ids[sid][0],
                    "r": role,
                    "c": content,
                    "i": intent,
                    "cf": conf,
                    "e": json.dumps(ents),
                    "at": at,
                },
            )
        for sid, uid, score, converted, created in LEADS:
            conn.execute(
                sa.text(
                    "INSERT INTO qualified_leads (user_id, session_id, qualification_score, converted,"
                    " created_at) VALUES (:u, :s, :q, :cv, :c)"
                ),
                {"u": users[uid], "s": sid, "q": score, "cv": converted, "c": created},
            )
        for sid, reason, created in HANDOFFS:
            conn.execute(
                sa.text("INSERT INTO human_handoffs (session_id, reason, created_at) VALUES (:s, :r, :c)"),
                {"s": ids[sid][0], "r": reason, "c": created},
            )


#: Two users due for retention (chatbot_maintenance) beside the world above: Carla never consented
#: (account from January), Dora consented but has been inactive since 2024. Bruno's first session
#: expired an hour after it began; Ana's second one expires in the future.
DUE_USERS = [
    ("+5511990000003", "Carla", "carla@example.com", False, dt.datetime(2026, 1, 5, tzinfo=dt.UTC)),
    ("+5511990000004", "Dora", "dora@example.com", True, dt.datetime(2024, 1, 10, tzinfo=dt.UTC)),
]
DUE_SESSIONS = [("s-carla-1", 0, DAY1), ("s-dora-1", 1, dt.datetime(2024, 6, 1, 10, 0, tzinfo=dt.UTC))]
#: message id, session, role, content, seconds after the session start
DUE_MESSAGES = [
    ("c1", "s-carla-1", "user", "Não quero receber mensagens, Carla aqui", 0),
    ("c2", "s-carla-1", "assistant", "Entendido, Carla.", 2),
    ("d1", "s-dora-1", "user", "Meu CPF é 123.456.789-00, quero um Onix", 0),
]


def populate_maintenance(engine: sa.Engine) -> None:
    """Add the users due for retention and the sessions' expiry times (after :func:`populate`)."""
    with engine.begin() as conn:
        sessions = {}
        for n, (phone, name, email, consent, created) in enumerate(DUE_USERS):
            uid = conn.scalar(
                sa.text(
                    "INSERT INTO users (phone_number, name, email, consent_given, created_at, updated_at)"
                    " VALUES (:p, :n, :e, :c, :at, :at) RETURNING id"
                ),
                {"p": phone, "n": name, "e": email, "c": consent, "at": created},
            )
            for sid, owner, started in DUE_SESSIONS:
                if owner == n:
                    sessions[sid] = (
                        conn.scalar(
                            sa.text(
                                "INSERT INTO sessions (session_id, user_id, user_profile, created_at, updated_at)"
                                ' VALUES (:s, :u, \'{"city": "Santos"}\', :at, :at) RETURNING id'
                            ),
                            {"s": sid, "u": uid, "at": started},
                        ),
                        started,
                        uid,
                    )
        for mid, sid, role, content, after in DUE_MESSAGES:
            at = sessions[sid][1] + dt.timedelta(seconds=after)
            conn.execute(
                sa.text(
                    "INSERT INTO messages (message_id, session_id, role, content, entities, created_at,"
                    ' updated_at) VALUES (:m, :s, :r, :c, \'{"name": "x"}\', :at, :at)'
                ),
                {"m": mid, "s": sessions[sid][0], "r": role, "c": content, "at": at},
            )
        conn.execute(
            sa.text(
                "INSERT INTO qualified_leads (user_id, session_id, qualification_score) VALUES (:u, :s, 0.4)"
            ),
            {"u": sessions["s-carla-1"][2], "s": "s-carla-1"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO car_interactions (session_id, car_id, interaction_type, feedback)"
                " VALUES (:s, 'onix-2024', 'like', 'Gostei, Dora')"
            ),
            {"s": sessions["s-dora-1"][0]},
        )
        conn.execute(
            sa.text(
                "UPDATE sessions SET expires_at = CASE session_id WHEN 's-bruno-1' THEN CAST(:past AS timestamptz)"
                " WHEN 's-ana-2' THEN CAST(:future AS timestamptz) END"
                " WHERE session_id IN ('s-bruno-1', 's-ana-2')"
            ),
            {"past": DAY1 + dt.timedelta(hours=1), "future": DAY2 + dt.timedelta(days=100)},
        )
