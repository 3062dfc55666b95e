"""The commands' actions, one module per command: each takes the frozen request its `cli/` command built, does the work
through the library below, prints (rich or one line per event in a log), and returns the exit code. With `cli/` the only
layer that imports click; nothing below prints tables or decides exit codes.
"""
