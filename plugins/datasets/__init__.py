"""Built-in datasets plugins; each module is its own entry point."""
