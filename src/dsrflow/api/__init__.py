"""HTTP API (JSON, /api/v1): public intake, handler routes, workflow definitions."""
