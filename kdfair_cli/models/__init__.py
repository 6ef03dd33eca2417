"""Model architectures and the registry that builds them by name."""
