"""Outgoing mail: the transactional outbox, letter rendering, and delivery (SMTP or Maildir)."""
