"""The Redis cache layer. Knows Redis; knows nothing of HTTP or of users."""
