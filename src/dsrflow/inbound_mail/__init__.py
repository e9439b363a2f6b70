"""Inbound mail: every message that reached the mailbox, what became of it, and the triage inbox."""
