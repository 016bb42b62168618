"""The prism role."""
