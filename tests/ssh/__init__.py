"""SSH-target tests against a private sshd on loopback (a package: its conftest and helper
module must not clash with the root conftest.py)."""
