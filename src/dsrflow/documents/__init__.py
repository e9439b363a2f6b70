"""Identity and authority documents the requester uploads from the status page."""
