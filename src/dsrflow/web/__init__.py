"""The web layer shared by the pages, the API and the console: CSRF, limits, headers."""
