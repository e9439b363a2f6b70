"""The handler console: HTML pages for the privacy desk, on the same services as the API."""
