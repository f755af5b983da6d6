"""Mail that must never be answered (RFC 3834): bounces and auto-replies, and how to tell them.

``classify_automatic`` is a pure function of the message. Bounces are checked first (a bounce
is automatic too, but it also says which addresses failed: ``bounced``); then the signs of
auto-replies, vacation notices, read receipts, complaint reports, provider notifications,
list traffic and machine senders (noreply, list servers' admin addresses, the mailer's own
inbox). ``X-Auto-Response-Suppress`` is not one: Outlook puts it on people's mail too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Literal

from mailer.understand.bounced import failed_addresses


@dataclass(frozen=True)
class Automatic:
    """Why a message is automatic; for a bounce, which addresses failed and whether for now only."""

    kind: Literal["auto_reply", "bounce"]
    reason: str
    bounced: tuple[str, ...] = ()
    temporary: bool = False


# Subjects of non-delivery reports from the common servers, in English, French and Spanish.
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|not (?:been |be )?delivered|delivery (?:status )?notification"
    r"|delivery (?:failure|failed|report|problem|has failed)|failure (?:notice|delivery)"
    r"|mail delivery|returned mail|mail system error|failed mail|non-?delivery|message delayed"
    r"|delayed mail|delivery delayed|mail error|user unknown"
    r"|non remis|non distribu|échec de (?:la )?remise"
    r"|no se (?:puede|pudo) entregar|no entregado|error de entrega"
    r"|notificación de estado de entrega"
    # pt, de, it, nl, pl, ru, tr, id, zh, ja, ar: the reports' subjects in other languages
    r"|não (?:foi possível )?entregue|falha na entrega|unzustellbar|nicht zustellbar"
    r"|non recapitabile|mancata consegna|onbestelbaar|niet afgeleverd|niedostarczon"
    r"|nie dostarczon|не доставлен|недоставлен|iletilemedi|teslim edilemedi"
    r"|tidak terkirim|gagal terkirim|无法投递|退信|未送達|配信不能|配信エラー|メールエラー"
    r"|تعذر التسليم|فشل التسليم",
    re.IGNORECASE,
)
# Out-of-office subjects. "Absence" only as the prefix clients write ("Absence : ...") or as
# "absent(e) du bureau": a participant's "Absence au webinaire" is a cancellation to read.
_AUTO_REPLY_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response"
    r"|réponse automatique|absente? du bureau|^\s*absence\s*:|respuesta automática"
    r"|fuera de la oficina|fuera de oficina|ausente de la oficina|respuesta de ausencia"
    # The same notices in Portuguese, German, Italian and Dutch (Outlook's own words).
    r"|resposta automática|resposta automatica|automatische antwort|abwesenheitsnotiz"
    r"|risposta automatica|automatisch antwoord"
    # Read receipts sent as plain text, not as a disposition-notification report: the
    # word "read" first, with its colon, as clients write them ("Read: ...", "Lu : ...").
    r"|^\s*(?:not read|read|non lu|lu|no leído|no leido|leído|leido|não lido|lido"
    r"|nicht gelesen|gelesen|non letto|letto|niet gelezen|gelezen)\s*:"
    r"|read receipt|return receipt|lesebestätigung",
    re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(r"\s*(?:re|aw|rv|r|ref|réf|fw|fwd|tr)\s*:", re.IGNORECASE)
_DAEMONS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "mdaemon",
                      "post_master", "post-master"})
# Senders no person writes from: noreply addresses, list servers and their admin addresses
# ("-request", "-owner", "owner-", "-bounces", listserv, majordomo...). Read on the local part
# (at most 64 characters), every alternative anchored: linear.
_MACHINE_SENDER = re.compile(
    r"(?:^|[._+-])(?:no[._-]?reply|do[._-]?not[._-]?reply|noreply)(?:$|[._+-])"
    r"|^(?:mailer[._-]?daemon|post[._-]?master|listserv|listproc|majordomo|mailman|ezmlm"
    r"|sympa|lyris|smartlist|auto[._-]?reply|autoresponder|bounces?)(?:$|[+._-])"
    r"|-(?:request|owner|bounces?)$|^owner-",
    re.IGNORECASE)
# Headers only list servers write.
_LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post", "List-Subscribe", "List-Help",
                 "List-Owner", "List-Archive", "Mailing-List", "X-Mailing-List", "X-ML-Name",
                 "X-MLServer", "X-List")
# Display names of the bounce senders that use an ordinary-looking address.
_DAEMON_NAMES = re.compile(r"mail delivery (?:system|subsystem)|mail administrator"
                           r"|system administrator|postmaster|mailer-daemon", re.IGNORECASE)
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})


def _header(msg: Message, name: str) -> str | None:
    """A header's value as text, or None; never raises on a malformed header."""
    try:
        value = msg.get(name)
    except (ValueError, TypeError, IndexError, AttributeError):
        return None  # the email package may fail on badly encoded headers
    return None if value is None else str(value)


def _address(msg: Message, name: str) -> tuple[str, str] | None:
    """(display name, lower-case address) of an address header; address "" for "<>"."""
    value = _header(msg, name)
    if value is None:
        return None
    if re.search(r"<\s*>", value):
        return parseaddr(value)[0], ""
    display, address = parseaddr(value)
    return display, address.lower()


def _addresses(msg: Message, *names: str) -> set[str]:
    # The first 8,000 characters of each: enough for 200 recipients, and getaddresses on
    # a header of 5,000 takes a tenth of a second.
    values = [str(v)[:8_000] for name in names for v in _header_all(msg, name)[:20]]
    return {addr.lower() for _n, addr in getaddresses(values)[:50] if "@" in addr}


def _header_all(msg: Message, name: str) -> list[object]:
    try:
        return list(msg.get_all(name) or [])
    except (ValueError, TypeError, IndexError, AttributeError):
        return []


def _failed_addresses(msg: Message) -> tuple[set[str], set[str], bool]:
    """(permanent, temporary) failing addresses the report names, validated, lower-case;
    never the report's own sender or recipients (our inbox); and whether it is a delivery
    report saying every recipient got the message."""
    failures = failed_addresses(msg, ignore=frozenset(_addresses(msg, "From", "To")))
    return set(failures.permanent), set(failures.temporary), failures.delivered_only


def _machine_readable_failure(msg: Message) -> bool:
    """A DSN part or an ``X-Failed-Recipients`` header: only delivery reports have them."""
    if _header(msg, "X-Failed-Recipients"):
        return True
    return any(part.get_content_type() == "message/delivery-status"
               for part in _parts(msg))


def _parts(msg: Message, limit: int = 200) -> list[Message]:
    """The message's parts in order, at most ``limit`` (hostile nesting stays bounded)."""
    out: list[Message] = []
    for part in msg.walk():
        out.append(part)
        if len(out) >= limit:
            break
    return out


_SES_BOUNCE = re.compile(
    r'\\?"(?:notificationType|eventType)\\?"\s{0,3}:\s{0,3}\\?"Bounce')


def _ses_bounce(msg: Message) -> bool:
    """An Amazon SES bounce notification (a JSON document sent through SNS)."""
    found = _address(msg, "From")
    if found is None or not found[1].endswith(("amazonaws.com", "amazonses.com")):
        return False
    for part in _parts(msg, 20):
        payload = part.get_payload()
        if isinstance(payload, str) and _SES_BOUNCE.search(payload[:20_000]):
            return True
    return False


def _bounce_reason(msg: Message, failures_found: bool) -> str | None:
    """Which rule says the message is a non-delivery report, if one does."""
    if (msg.get_content_type() == "multipart/report"
            and str(msg.get_param("report-type") or "").lower() == "delivery-status"):
        return "delivery status notification (RFC 3464)"
    if _machine_readable_failure(msg):
        return "delivery status notification (RFC 3464 part or X-Failed-Recipients)"
    for header in ("From", "Return-Path", "Sender"):
        found = _address(msg, header)
        if found is None:
            continue
        display, address = found
        local = address.partition("@")[0]
        if local in _DAEMONS:
            return f"{header} is {local}"
        if header == "From" and address == "":
            return "null sender <>"
        if header == "From" and _DAEMON_NAMES.search(display):
            return f"From is {display}"
    if _ses_bounce(msg):
        return "Amazon SES bounce notification"
    found = _address(msg, "From")
    if (found and _MACHINE_SENDER.search(found[1].partition("@")[0][:64])
            and _complaint_reason(msg) is None
            and any(part.get_content_type() in ("message/rfc822", "text/rfc822-headers")
                    for part in _parts(msg))):
        return "a machine's notice returning a message"
    subject = _header(msg, "Subject") or ""
    # A person's "Re: mail delivery of the pack" is not a bounce, but a few servers prefix
    # "RE:" too: then the failed addresses flufl.bounce finds in the body must confirm it.
    if _BOUNCE_SUBJECT.search(subject) and (failures_found or not _REPLY_PREFIX.match(subject)):
        return "bounce subject"
    return None


_FEEDBACK_TYPE = re.compile(r"^Feedback-Type:[ \t]*[\w-]", re.MULTILINE | re.IGNORECASE)


def _complaint_reason(msg: Message) -> str | None:
    """A complaint (abuse) report in any MIME shape: ARF (RFC 5965) as multipart/report or
    not, a ``Feedback-Type:`` block in a text part, Microsoft's JMRP (an attached message
    with ``X-HmXmrOriginalRecipient``), Amazon SES's complaint notification."""
    if str(msg.get_param("report-type") or "").lower() == "feedback-report":
        return "complaint report (ARF)"
    for part in _parts(msg):
        kind = part.get_content_type()
        if kind == "message/feedback-report":
            return "complaint report (ARF)"
        if kind == "message/rfc822" and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, Message) and _header(inner, "X-HmXmrOriginalRecipient"):
                return "complaint report (Microsoft JMRP)"
        elif kind == "text/plain":
            payload = part.get_payload()
            if isinstance(payload, str) and _FEEDBACK_TYPE.search(payload[:4000]):
                return "complaint report (Feedback-Type)"
    return None


def _machine_sender_reason(msg: Message, inbox: str) -> str | None:
    """A sender no person writes from, or the mailer's own inbox (with any plus-tag)."""
    for header in ("From", "Sender", "Return-Path"):
        found = _address(msg, header)
        if found is None or "@" not in found[1]:
            continue
        local, _at, domain = found[1].rpartition("@")
        if inbox and _same_mailbox(found[1], inbox):
            return f"{header} is the mailer's own address"
        if _MACHINE_SENDER.search(local[:64]):
            return f"{header} is a machine's address ({local})"
        if domain.endswith(("sns.amazonaws.com", "amazonses.com")) and header == "From":
            return "Amazon SES/SNS notification"
    return None


def _same_mailbox(address: str, inbox: str) -> bool:
    """``address`` is ``inbox`` or a plus-tag of it (webinars+africa@...)."""
    local, _at, domain = address.lower().rpartition("@")
    own_local, _at, own_domain = inbox.lower().rpartition("@")
    return domain == own_domain and local.split("+", 1)[0] == own_local.split("+", 1)[0]


def _auto_reply_reason(msg: Message, inbox: str = "") -> str | None:
    """Which RFC 3834 header or out-of-office sign the message carries, if any."""
    auto_submitted = (_header(msg, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if _header(msg, name) is not None:
            return f"{name} header"
    for name in ("Precedence", "X-Precedence"):
        precedence = (_header(msg, name) or "").strip().lower()
        if precedence in _BULK_PRECEDENCE:
            return f"Precedence: {precedence}"
    for name in _LIST_HEADERS:
        if _header(msg, name) is not None:
            return f"mailing list ({name})"
    if _header(msg, "x-amz-sns-message-id") or _header(msg, "x-amz-sns-message-type"):
        return "Amazon SNS notification"
    if msg.get_content_type() == "multipart/report":
        return "report (read receipt or other notification)"
    complaint = _complaint_reason(msg)
    if complaint:
        return complaint
    machine = _machine_sender_reason(msg, inbox)
    if machine:
        return machine
    # X-Auto-Response-Suppress is no sign: Outlook puts it on mail people write, too.
    if _AUTO_REPLY_SUBJECT.search(_header(msg, "Subject") or ""):
        return "out-of-office subject"
    return None


def _null_return_path(msg: Message) -> bool:
    """True when the envelope sender was "<>" (bounces, but also some auto-replies)."""
    found = _address(msg, "Return-Path")
    return found is not None and found[1] == ""


def classify_automatic(msg: Message, inbox: str = "") -> Automatic | None:
    """Whether ``msg`` is a bounce or an auto-reply that must not be answered, and why.

    ``inbox`` is the mailer's own address: mail from it (or a plus-tag of it) is never
    answered, whatever it says.
    """
    # The bounce detectors read the whole body: run them only when a cheap sign (report
    # type, daemon sender, bounce subject, DSN part, null Return-Path) could make this a
    # bounce. Same verdicts, a sixth of the time per ordinary reply.
    if _bounce_reason(msg, True) is None and not _null_return_path(msg):
        # No sign at all (most mail): no bounce, since _bounce_reason with no failures found
        # is stricter still and the Return-Path is not null; only an auto-reply is left.
        reason = _auto_reply_reason(msg, inbox)
        return Automatic("auto_reply", reason) if reason else None
    permanent, temporary, delivered = _failed_addresses(msg)
    if delivered:
        return Automatic("auto_reply", "delivery report: delivered (RFC 3464)")
    bounced = tuple(sorted(permanent | temporary))
    # The failed addresses alone do not decide: flufl.bounce's looser detectors (LLNL's)
    # find "failed" addresses in ordinary replies that list recipients.
    reason = _bounce_reason(msg, bool(bounced))
    auto = _auto_reply_reason(msg, inbox)
    if reason is None and auto is None and _null_return_path(msg):
        # Exchange sends out-of-office notices with a null envelope sender too, so "<>" counts
        # as a bounce only when nothing says auto-reply.
        reason = "null Return-Path <>"
    if reason:
        return Automatic("bounce", reason, bounced, temporary=bool(temporary) and not permanent)
    return Automatic("auto_reply", auto) if auto else None
