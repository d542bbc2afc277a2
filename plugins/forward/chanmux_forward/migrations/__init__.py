"""chanmux-forward's schema history (Alembic revisions of the branch "chanmux-forward")."""
