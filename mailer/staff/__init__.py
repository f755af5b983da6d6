"""Staff in control: references, the audit trail, staff actions, the daily digest, acting by
replying to it, one person's data (export and erasure), messages and quarantine.

``refs``, ``grammar`` and ``tokens`` are pure; ``actions``, ``digest``, ``replies``,
``person`` and ``mail`` work on the store; ``cli`` adds the commands to ``mailer``.
"""
