"""The mailer's reply extraction beside the reply-parsing libraries, on the same 150 cases.

The reply cases of the peer corpora (``../shared/corpus/peers/expected.json``, ``replies``),
scored as ``tests/test_peers.py`` scores the mailer (``tests.peers.score``): exactly right,
and leaking lines of the quoted original. Each library gets the message's first non-blank
text/plain part, or its HTML through the library's own HTML reader when it has one (talon,
quotequail) and as text otherwise (inscriptis, as the mailer reads HTML):

- talon (Mailgun): ``quotations.extract_from_plain`` / ``extract_from_html``, then its
  machine-learnt ``signature.extract``. PyPI's talon 1.4.4 cannot import its signature
  classifier on Python 3.11 (``sklearn.externals.joblib`` is gone); 1.6.0, from its
  repository, installs and runs.
- quotequail: ``quote`` / ``quote_html`` (the intro line counted as quote).
- mail-parser-reply: ``EmailReplyParser(languages=[all 13 it knows]).parse_reply``.
- email-reply-parser (Zapier's port of GitHub's): ``EmailReplyParser.parse_reply``.

None of them is a dependency of the mailer; install them into the checkout's virtualenv to
measure (those missing are reported as such)::

    .venv/bin/pip install quotequail mail-parser-reply email-reply-parser
    .venv/bin/pip install "git+https://github.com/mailgun/talon@v1.6.0"   # or a local copy
    .venv/bin/python -m bench.reply_libraries
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from email.message import Message
from email.utils import parseaddr

from inscriptis import get_text

from mailer.understand.message import parse_message
from mailer.understand.written import _decode, _leaves, reply_text
from tests import peers

Extractor = Callable[[Message], str]


def _parts(msg: Message) -> tuple[str | None, str | None]:
    """(first non-blank text/plain part, first text/html part) of a message."""
    plain = html = None
    for part in _leaves(msg):
        if part.get_content_type() == "text/plain" and plain is None and _decode(part).strip():
            plain = _decode(part)
        elif part.get_content_type() == "text/html" and html is None:
            html = _decode(part)
    return plain, html


def _text(msg: Message) -> str:
    plain, html = _parts(msg)
    return plain if plain is not None else get_text(html or "")


def _talon() -> Extractor:
    import talon
    from talon import quotations, signature
    talon.init()

    def extract(msg: Message) -> str:
        plain, html = _parts(msg)
        text = (quotations.extract_from_plain(plain) if plain is not None
                else get_text(quotations.extract_from_html(html or "")))
        sender = parseaddr(str(msg.get("From") or ""))[1] or "sender@example.org"
        return signature.extract(text, sender=sender)[0]
    return extract


def _quotequail() -> Extractor:
    import quotequail

    def extract(msg: Message) -> str:
        plain, html = _parts(msg)
        if plain is not None:
            parts = quotequail.quote(plain, quote_intro_line=True)
            return parts[0][1] if parts[0][0] else ""
        parts = quotequail.quote_html(html or "", quote_intro_line=True)
        return get_text(parts[0][1]) if parts[0][0] else ""
    return extract


def _mail_parser_reply() -> Extractor:
    from mailparser_reply import EmailReplyParser
    from mailparser_reply.constants import MAIL_LANGUAGES
    parser = EmailReplyParser(languages=[k for k in MAIL_LANGUAGES if len(k) == 2])
    return lambda msg: parser.parse_reply(text=_text(msg))


def _email_reply_parser() -> Extractor:
    from email_reply_parser import EmailReplyParser
    return lambda msg: EmailReplyParser.parse_reply(_text(msg))


CANDIDATES: list[tuple[str, Callable[[], Extractor]]] = [
    ("the mailer (understand.written)", lambda: reply_text),
    ("talon 1.6 + its signature stripper", _talon),
    ("quotequail", _quotequail),
    ("mail-parser-reply", _mail_parser_reply),
    ("email-reply-parser", _email_reply_parser),
]


def main() -> int:
    warnings.filterwarnings("ignore")
    cases = peers.reply_cases()
    messages = [parse_message(peers.raw_of(case)) for case in cases]
    print(f"{'':38} {'right':>6} {'leaking':>8}   (of {len(cases)} reply cases)")
    for name, make in CANDIDATES:
        try:
            extract = make()
        except ImportError as exc:
            print(f"{name:38} not installed ({exc.name})")
            continue
        right = leaking = 0
        for case, msg in zip(cases, messages, strict=True):
            try:
                text = extract(msg) or ""
            except Exception:  # noqa: BLE001 - a library failing on a case gets it wrong
                text = ""
            verdict = peers.score(text, case)
            right += verdict.right
            leaking += bool(verdict.leaked)
        print(f"{name:38} {right:>6} {leaking:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
