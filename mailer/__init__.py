"""The webinar mailer: the email side of webinar and workshop series, run unattended."""

__version__ = "0.1.0"
