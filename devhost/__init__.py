"""Local stand-in for `func start` (not deployed; see .funcignore)."""
