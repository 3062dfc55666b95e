"""What tests share, importable as `support` (pyproject's pytest `pythonpath = ["tests"]`): starting, waiting for and
stopping service subprocesses (`processes`), the PostgreSQL, `rkdbench server` and Ray fixtures (`services`), a real
`mlflow server` (`mlflow_server`), running the CLI and reading its cell runs (`cli`), the fabricated data several
folders build on: stored leaderboard runs (`leaderboard_runs`), CIFAR files in torchvision's format (`cifar_files`)
and tiny digits trainers (`training`), and the stores no test may leave behind (`stray_stores`). No test module
imports another; what two need lives here.
"""
