"""Handler identities: bearer tokens (stored hashed) and roles."""
