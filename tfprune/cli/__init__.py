"""Command-line apps (absl) behind the console entry points."""
