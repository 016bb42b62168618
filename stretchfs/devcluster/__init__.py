"""Local clusters of real processes, for developers, tests and benchmarks."""
