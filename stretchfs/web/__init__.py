"""HTTP code shared by every role."""
