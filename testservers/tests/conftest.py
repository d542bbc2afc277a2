"""The suite's fixtures are the harness's own pytest plugin (chanmux_testservers.fixtures):
real Synapse, ngircd and InspIRCd servers for the session, every async test on both backends."""

pytest_plugins = ["chanmux_testservers.fixtures"]
