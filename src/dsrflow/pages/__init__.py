"""Requester pages: the request form, the e-mail verification link and the status page."""
