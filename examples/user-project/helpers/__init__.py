"""The project's helper modules (importable in the guest: the project is on its path)."""
