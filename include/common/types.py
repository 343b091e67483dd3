"""Column types that mean the same on SQLite, MariaDB/MySQL and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

#: BIGINT keys autoincrement on MySQL/PostgreSQL; SQLite only does so for INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
#: MySQL's TEXT stops at 64 KB; conversations and attribute documents can be longer.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")
