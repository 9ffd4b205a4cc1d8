"""Business rules between the HTTP layer (or the CLI) and the repositories."""
