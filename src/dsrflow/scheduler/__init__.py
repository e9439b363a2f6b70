"""The scheduler: APScheduler 3 running sweeps (deadlines, identity waits, digest), outbox
dispatch and the IMAP poll, inside `dsrflow serve` or alone as `dsrflow scheduler`."""
