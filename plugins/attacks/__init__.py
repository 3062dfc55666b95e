"""Built-in attacks plugins; each module is its own entry point."""
