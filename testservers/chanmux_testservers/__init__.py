"""Real chat servers on loopback for chanmux's tests: IRC (ngircd, InspIRCd + Anope) and Synapse."""
