"""Timing constants of the test suite: every wait is a multiple of TIMEOUT."""

#: Seconds any single network wait in a test may take before the test fails.
TIMEOUT = 10.0
