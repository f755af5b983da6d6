"""Is this inbound message a reply to the staff digest? A cheap look made for every message.

Without reading the store: a recipient that is a digest reply address (the plus-tag), or a
staff address writing commands. Either way the message is handled as staff commands
(``replies``), accepted or refused and reported, and never as a participant's reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailer.config import Settings
from mailer.domain import Intent, normalise_email
from mailer.staff import grammar, tokens

if TYPE_CHECKING:
    from mailer.handling import Policy

# Headers end at the first empty line; the tag is looked for there only.
_HEADER_END = (b"\r\n\r\n", b"\n\n")


def header_block(raw: bytes) -> bytes:
    """The raw header lines of a message (all of it when there is no body)."""
    ends = [i for i in (raw.find(end) for end in _HEADER_END) if i >= 0]
    return raw[:min(ends)] if ends else raw


def concerns(raw: bytes, intent: Intent, policy: Policy) -> bool:
    """True when the message addresses a digest reply address, or comes from a staff address
    and holds commands (a reply that lost its address, or a forged From: refused)."""
    if tokens.mentions_tag(header_block(raw)):
        return True
    return intent.sender in policy.staff_addresses and grammar.has_commands(intent.text)


def staff_policy(settings: Settings) -> dict[str, Any]:
    """The ``Policy`` fields the staff's settings give (who may act by reply, and the secret)."""
    staff = settings.staff
    addresses = staff.addresses or [settings.organiser.staff_address]
    return {"staff_addresses": frozenset(normalise_email(a) for a in addresses),
            "digest_secret": staff.secret.get_secret_value() if staff.secret else "",
            "reply_days": staff.reply_days,
            "keep_raw_bytes": settings.retention.quarantine_keep_bytes}


def policy_for(settings: Settings) -> Policy:
    """The handling policy a daemon with these settings uses."""
    from mailer.handling import Policy

    address = settings.organiser.address
    return Policy(inbox_address=address, staff_address=settings.organiser.staff_address,
                  domain=address.rpartition("@")[2] or "localhost",
                  answers_per_day=settings.limits.auto_answers_per_day,
                  max_bytes=settings.imap.max_message_bytes,
                  recent_event_days=settings.replies.recent_event_days, **staff_policy(settings))
