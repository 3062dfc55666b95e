"""Built-in teachers plugins; each module is its own entry point."""
