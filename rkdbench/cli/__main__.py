"""`python -m rkdbench.cli`: the same as the `rkdbench` command."""

from . import main

main()
