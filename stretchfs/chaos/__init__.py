"""Failure scenarios against a local cluster, under a bounded client load."""
