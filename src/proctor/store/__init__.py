"""Storage: SQLAlchemy Core tables and Alembic migrations over SQLite and PostgreSQL."""

from .engine import Appended, Store, WouldBlock, WriteTx, normalize_url

__all__ = ["Appended", "Store", "WouldBlock", "WriteTx", "normalize_url"]
