"""Event output formats: the seed's `normal` text lines and JSON Lines."""
