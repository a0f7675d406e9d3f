"""Database engine, sessions and migrations."""

from codeblue.store.db import Base, Database

__all__ = ["Base", "Database"]
