"""The mail fixtures (a real aiosmtpd server and a runtime pointed at it) for these tests too."""

from tests.outbound_mail.conftest import mail_rt, smtp

__all__ = ["mail_rt", "smtp"]
