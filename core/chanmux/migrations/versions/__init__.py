"""chanmux's own schema history (Alembic revisions of the branch "chanmux")."""
