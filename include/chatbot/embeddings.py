"""Message embeddings for the chatbot's semantic search, kept in DuckDB's ``message_embeddings``.

The original service planned embeddings with WordLlama. Its default 256-dimension model ships inside
the wheel, so it loads from the package directory with downloads disabled (no network at run time).
Where ``wordllama`` is not installed, a deterministic hashing embedding (word and character-trigram
features hashed into 256 signed buckets) stands in; every row records the ``model_name`` that made it,
and search only compares vectors of the same model.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from include.chatbot.duckdb_store import EMBEDDING_DIM

HASHING_MODEL = f"hashing-v1-{EMBEDDING_DIM}"


@dataclass(frozen=True)
class Embedder:
    model_name: str
    embed: Callable[[Sequence[str]], list[list[float]]]


def _normalise(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [float(v) / norm for v in vector]


def hashing_embed(texts: Sequence[str]) -> list[list[float]]:
    """The fallback: lower-cased words and their character trigrams, each hashed to a signed bucket."""
    out = []
    for text in texts:
        vector = [0.0] * EMBEDDING_DIM
        for word in re.findall(r"\w+", (text or "").lower()):
            padded = f"#{word}#"
            for feature in [word, *(padded[i : i + 3] for i in range(len(padded) - 2))]:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "big") % EMBEDDING_DIM
                vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        out.append(_normalise(vector))
    return out


def load_embedder(prefer_wordllama: bool = True) -> Embedder:
    """WordLlama's bundled model if installed (offline), else the hashing embedding."""
    if prefer_wordllama:
        try:
            import wordllama
            from wordllama import WordLlama
        except ImportError:
            pass
        else:
            package = Path(wordllama.__file__).parent
            model = WordLlama.load(cache_dir=package, disable_download=True, dim=EMBEDDING_DIM)
            weights = sorted(p.stem for p in (package / "weights").glob(f"*_{EMBEDDING_DIM}.safetensors"))
            name = f"wordllama-{weights[0] if weights else 'l2_supercat_' + str(EMBEDDING_DIM)}"
            return Embedder(name, lambda texts: [_normalise(v) for v in model.embed(list(texts)).tolist()])
    return Embedder(HASHING_MODEL, hashing_embed)


def embed_messages(duck, embedder: Embedder) -> int:
    """Embed the copied messages that have no embedding of ``embedder`` for their current content."""
    pending = duck.execute(
        """SELECT h.message_id, h.session_id, h.phone_number, h.content, h.updated_at
           FROM message_history h LEFT JOIN message_embeddings e ON e.message_id = h.message_id
           WHERE coalesce(h.content, '') <> '' AND (e.message_id IS NULL OR e.content IS DISTINCT FROM h.content
                 OR e.model_name <> ?)
           ORDER BY h.message_id""",
        [embedder.model_name],
    ).fetchall()
    if not pending:
        return 0
    vectors = embedder.embed([row[3] for row in pending])
    duck.begin()
    try:
        duck.execute(
            "DELETE FROM message_embeddings WHERE message_id IN (SELECT unnest(?::VARCHAR[]))",
            [[row[0] for row in pending]],
        )
        duck.executemany(
            "INSERT INTO message_embeddings VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (*row[:4], vector, embedder.model_name, row[4])
                for row, vector in zip(pending, vectors, strict=True)
            ],
        )
        duck.commit()
    except BaseException:
        duck.rollback()
        raise
    return len(pending)


def search(duck, query: str, embedder: Embedder, limit: int = 5) -> list[dict]:
    """The ``limit`` messages most similar to ``query`` (DuckDB's built-in cosine similarity)."""
    [vector] = embedder.embed([query])
    rows = duck.execute(
        f"""SELECT message_id, session_id, phone_number, content,
                   array_cosine_similarity(embedding, ?::FLOAT[{EMBEDDING_DIM}]) AS score
            FROM message_embeddings WHERE model_name = ?
            ORDER BY score DESC, message_id LIMIT ?""",
        [vector, embedder.model_name, limit],
    ).fetchall()
    keys = ["message_id", "session_id", "phone_number", "content", "score"]
    return [dict(zip(keys, row, strict=True)) for row in rows]
