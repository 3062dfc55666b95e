"""Built-in architectures plugins; each module is its own entry point."""
