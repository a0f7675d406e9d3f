"""Console sessions ended by signing out, so a copied session cookie dies with the sign-out.

A session cookie is self-contained (signed, see `codeblue.web.session`); deleting it in the browser does not
stop a copy of it from working until it expires. Signing out therefore records the session's end here, by
the SHA-256 digest of its nonce (never the nonce itself), until the session would have expired anyway.
"""

from __future__ import annotations

from sqlalchemy import Float, String
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base


class ConsoleSessionEnd(Base):
    __tablename__ = "console_session_ends"

    nonce_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    ended_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
