"""The store role."""
