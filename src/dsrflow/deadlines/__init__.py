"""Deadlines: reminders, escalations and the daily digest; extending a request's target date."""
