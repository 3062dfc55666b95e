"""Built-in methods plugins; each module is its own entry point."""
