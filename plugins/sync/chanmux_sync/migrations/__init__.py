"""chanmux-sync's schema history (Alembic revisions of the branch "chanmux-sync")."""
