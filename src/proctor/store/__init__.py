"""Storage: SQLAlchemy Core tables and Alembic migrations over SQLite and PostgreSQL."""

from .engine import Appended, Store, WriteTx, normalize_url

__all__ = ["Appended", "Store", "WriteTx", "normalize_url"]
