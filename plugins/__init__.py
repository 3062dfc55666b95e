"""rkdbench's built-in plugins (import name `rkdbench_plugins`), registered through the `rkdbench` entry-point
group exactly like a third party's plugins."""
