"""chanmux-irc's schema history (Alembic revisions of the branch "chanmux-irc")."""
