"""The built-in executors: `serial` (this process), `local` (`--workers N` processes on this machine), `ray` (one Ray
task per cell). Each is registered through the `rkdbench` entry-point group like a third party's executor."""
