"""Disclosure packages: files a handler attaches on fulfilment, downloaded by the requester."""
