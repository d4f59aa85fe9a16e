"""What a run covers: the kernel matrix (images/matrix.toml)."""
