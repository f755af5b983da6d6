"""Understanding inbound mail: one pure function per question a careful secretary would ask.

- ``automatic``: is it a machine's mail (bounce, auto-reply, list, notification)? Never answered.
- ``written``: what did the sender write, without the quoted original and signature?
- ``event``: which event is it about?
- ``who``: who is registering (names, countries, positions, organisations)? With ``prose``
  (introductions, sign-offs, the From name) and ``country`` (countries named in sentences, a
  government address).
- ``wants``: what do they want (register, cancel, a certificate, an answer)?
- ``calendar_reply``, ``language``: an answer to an invitation; the language of the reply.
- ``reading``: the order of the questions, from raw bytes to one ``Intent``.

``message`` parses the bytes and reads headers; ``folding`` is the text form matchers read.
"""

from mailer.understand.folding import fold
from mailer.understand.message import parse_message
from mailer.understand.reading import read, understand, understand_message
from mailer.understand.who import read_participants

__all__ = ["fold", "parse_message", "read", "read_participants", "understand",
           "understand_message"]
