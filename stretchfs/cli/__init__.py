"""The `stretchfs` command."""
