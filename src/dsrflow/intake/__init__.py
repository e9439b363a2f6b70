"""Ways in for requests by e-mail: reading a message (mail.py) and the IMAP poller (imap.py)."""
