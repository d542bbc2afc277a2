"""Fixtures of the IRC tests: real IRC servers for the session (helpers: irc_helpers.py)."""

#: anyio_backend (both backends), ngircd, inspircd (with services) and ircd (each in turn)
pytest_plugins = ["chanmux_testservers.fixtures"]
