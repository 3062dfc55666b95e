"""Executors that run a suite's cells somewhere other than the local loop in `runner.run_suite` (Ray)."""
