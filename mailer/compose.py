"""Composing outgoing mail: one Outgoing row becomes a MIME message (templates, .ics, files).

Staff edit the Jinja templates under ``templates/<lang>/``; this module gives them a fixed set of
values (see ``Composer.template_context``), builds the headers itself (so no text from mail can
ever add one), and lays the parts out the way Outlook and Gmail expect calendar invitations.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from email.headerregistry import Address
from email.utils import format_datetime, formataddr
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import jinja2
from babel.lists import format_list

from mailer import wire
from mailer.calendar import build_calendar
from mailer.config import Settings
from mailer.countries import country_name
from mailer.domain import (
    ANSWER_KINDS,
    CALENDAR_KINDS,
    CANCEL_KINDS,
    LEFT_SEAT_KINDS,
    PARTICIPANT_KINDS,
    PLACE_KINDS,
    STAFF_KINDS,
    Kind,
    Outgoing,
    outbox_key,
)
from mailer.errors import PermanentSendError, Problem, ScheduleError, TemplateError, UsageError
from mailer.localtime import format_day, format_span_utc, local_span
from mailer.schedule import LANGUAGES, Catalog, Event
from mailer.understand.message import valid_address

Attachment = tuple[str, str, bytes]     # (filename, MIME type, content)
Link = tuple[str, str]                  # (label, URL) for files too large to attach

# The registration form's labels; the reply parser reads the same words back.
FIELD_LABELS: dict[str, dict[str, str]] = {
    "en": {"name": "Name", "position": "Position", "organisation": "Organisation",
           "country": "Country", "email": "Email"},
    "fr": {"name": "Nom", "position": "Fonction", "organisation": "Organisation",
           "country": "Pays", "email": "Courriel"},
    "es": {"name": "Nombre", "position": "Cargo", "organisation": "Organización",
           "country": "País", "email": "Correo electrónico"},
}
PACK_LABELS: dict[str, dict[str, str]] = {
    "en": {"factsheet": "Factsheet", "bibliography": "Bibliography", "slides": "Slides"},
    "fr": {"factsheet": "Fiche d’information", "bibliography": "Bibliographie",
           "slides": "Présentation"},
    "es": {"factsheet": "Ficha informativa", "bibliography": "Bibliografía",
           "slides": "Presentación"},
}
# Kinds sent to someone holding a place (or a waiting one): they may cancel by reply.
_CANCELLABLE = frozenset({Kind.ACKNOWLEDGEMENT, Kind.WAITING_LIST, Kind.PENDING_REVIEW,
                          Kind.ALREADY_REGISTERED, Kind.PROMOTION, Kind.REMINDER, Kind.PACK,
                          Kind.UPDATE})
# Kinds that may show the join link: only confirmed participants get it.
_LINK_KINDS = frozenset({Kind.ACKNOWLEDGEMENT, Kind.PROMOTION, Kind.REMINDER, Kind.PACK,
                         Kind.UPDATE})
# Kinds where "this session is recorded" is worth saying (the person may still attend).
_RECORDED_KINDS = frozenset({Kind.INVITATION, Kind.ACKNOWLEDGEMENT, Kind.WAITING_LIST,
                             Kind.PENDING_REVIEW, Kind.ALREADY_REGISTERED, Kind.PROMOTION,
                             Kind.REMINDER, Kind.PACK, Kind.UPDATE, Kind.CLARIFICATION})
# What a message may say the mailer guessed of a participant (templates/<lang>/_inferred).
INFERABLE = ("name", "country")
# Values every template may use even when the Outgoing's context does not carry them.
CONTEXT_DEFAULTS: dict[str, Any] = {
    "reason": "", "candidates": [], "text": "", "missing": [], "sender": "", "subject": "",
    "problems": [], "status": "", "previous_start": None, "previous_end": None,
    "previous_join_url": None, "previous_title": None, "unread_countries": [],
    "policy": "on_request", "inferred": [],
    # A staff move: the withdrawal names the new session, the new session's answer the old.
    "moved_to": "", "moved_status": "", "moved_from": "",
    # A corrected country: the country whose seat the registration gave up (its CANCEL).
    "left_seat": "",
    # A staff alert about an edit that was loaded (not refused) and needs their decision.
    "loaded": False,
    # A substitution: the colleague's answer names whom they replace and who asked; the
    # withdrawal names the colleagues registered in the sender's place.
    "replaces": "", "registered_by": "", "substitutes": [],
    # A substitution refused: the colleagues' countries the series does not invite.
    "substitute_countries": [],
    # Staff messages: the digest's facts, what a reply to it did, where replies to it go.
    "digest": {"id": 0, "day": "", "since": "", "until": "", "new": [], "waiting": [],
               "too_late": [], "uninvited": [],
               "questions": [], "unplaced": [], "failed": [], "quarantined": [], "coming": []},
    "results": [], "unread": [], "sent_to": "", "reply_to": "",
}

# Control, format (bidi overrides, zero-width) and line/paragraph separator characters.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})
_SPACES = re.compile(r"\s+")
_MSGID = re.compile(r"<[^<>\s\"]{1,250}@[^<>\s\"]{1,250}>")
# A dot-atom local part at a hostname: the addresses nearly everyone has (RFC 5322 3.2.3).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
                            r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_MAX_NAME = 120
_MAX_LINE = 500     # subjects and one-line reasons


def safe_display_name(text: str, limit: int = _MAX_NAME) -> str:
    """A name from mail made safe for a header or a body: one line, no encoded words, short.

    Encoded words are decoded once, so the name is shown as its sender wrote it rather than
    re-decoded by a mail client into something else; then every control and format character
    (CR, LF, NUL, bidi overrides) becomes a space, so it can never start a new header line.
    """
    if "=?" in text:
        with contextlib.suppress(ValueError, LookupError, UnicodeError):
            text = str(make_header(decode_header(text)))
    text = text.strip()         # often a template's trailing newline
    if not text.isprintable():  # printable text has none of the _UNSAFE categories
        text = "".join(" " if unicodedata.category(ch) in _UNSAFE else ch for ch in text)
    # Whatever still looks like an encoded word must stay literal text.
    text = text.replace("=?", "= ?").replace("?=", "? =")
    return _SPACES.sub(" ", text).strip()[:limit]


def french_de(name: str) -> str:
    """French "de" before a name, elided before a vowel: "d’Awa Diop", "de Jean Martin".

    Registered as the ``de`` template filter: Jinja cannot elide, and "de Awa" reads as a
    mistake in a formal letter.
    """
    first = name[:1].casefold()
    return f"d’{name}" if first and first in "aeiouyâàéèêëîïôöûüh" else f"de {name}"


def plus_address(address: str, event_id: str | None) -> str:
    """The Reply-To that brings replies back to one event: ``local+event@domain``."""
    if not event_id:
        return address
    local, _, domain = address.rpartition("@")
    return f"{local}+{event_id}@{domain}"


def _address(name: str, addr: str) -> Address:
    addr = addr.strip()
    try:
        if not addr.isascii():
            # Address's parser refuses a non-ASCII local part; an internationalised address
            # (RFC 6531, sent with SMTPUTF8) that is one valid address is built from its parts.
            if valid_address(addr) is None:
                raise ValueError("not one valid address")
            local, _at, domain = addr.rpartition("@")
            return Address(display_name=safe_display_name(name), username=local, domain=domain)
        return Address(display_name=safe_display_name(name), addr_spec=addr)
    except (ValueError, IndexError, HeaderParseError) as exc:
        # A recipient that cannot be written into a header can never be delivered to.
        raise PermanentSendError(f"invalid address: {exc}", recipient=addr) from None


def _format_address(address: Address) -> str:
    """An address header value: the display name quoted or RFC 2047-encoded as needed."""
    return _name_and_address(address.display_name, address.addr_spec)


def _name_and_address(name: str, addr: str) -> str:
    if name.isascii() and addr.isascii():
        return formataddr((name, addr))     # quotes the name when it needs it
    if name.isascii():
        # formataddr refuses an internationalised address; Address quotes the name alike.
        local, _at, domain = addr.rpartition("@")
        return str(Address(display_name=name, username=local, domain=domain))
    # Not formataddr's charset path: it writes one encoded word however long the name,
    # past the 75 characters RFC 2047 allows; Header splits it into several.
    return f"{Header(name, 'utf-8', maxlinelen=76, header_name='To').encode()} <{addr}>"


def _recipient_header(name: str, addr: str) -> tuple[str, str]:
    """The To header value and the envelope address of a participant.

    The usual plain address (letters, digits, dots, hyphens) skips ``Address``'s full
    RFC 5322 parse, a tenth of a reminder's composing time in a burst; anything else gets
    that parse, which refuses what cannot be delivered.
    """
    addr = addr.strip()
    if _PLAIN_ADDRESS.fullmatch(addr):
        return _name_and_address(safe_display_name(name), addr), addr
    address = _address(name, addr)
    return _format_address(address), address.addr_spec


@functools.lru_cache(maxsize=512)
def _header_text(text: str) -> str:
    """A one-line header text, folded; non-ASCII becomes RFC 2047 encoded words.

    Cached: a burst of reminders has one subject per event and language.
    """
    charset = "us-ascii" if text.isascii() else "utf-8"
    return Header(text, charset, maxlinelen=78, header_name="Subject").encode()


def _aware(value: Any) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


def _in_language(values: Any, lang: str, fallback: str) -> str:
    """One language's text of a ``{lang: text}`` value (a title, a description)."""
    if isinstance(values, str):
        return values
    if not isinstance(values, dict) or not values:
        return ""
    for candidate in (lang, fallback, "en", *LANGUAGES):
        if values.get(candidate):
            return str(values[candidate])
    return ""


def pack_files(event: Event, lang: str, packs_dir: Path) -> list[tuple[str, Path]]:
    """The information pack files for ``lang``: each item in ``lang``, else the event's, else en.

    Items with no file in any of those languages are left out (``mailer check`` reports them).
    """
    pack = event.series.spec.pack
    if pack is None:
        return []
    out: list[tuple[str, Path]] = []
    for item, pattern in pack.items():
        for candidate in dict.fromkeys((lang, event.language, "en")):
            path = packs_dir / pattern.format(lang=candidate)
            if path.is_file():
                out.append((item, path))
                break
    return out


def pack_label(item: str, lang: str) -> str:
    """The name of a pack item ("slides") as a participant reads it ("Présentation")."""
    return PACK_LABELS.get(lang, PACK_LABELS["en"]).get(item, item)


# -- a message with its files: what the outbox sends (and a worker process writes) ------------

_MIME = {".pdf": "application/pdf",
         ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
         ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


def carries_pack(out: Outgoing) -> bool:
    """True for the messages that attach the information pack's files."""
    return out.kind is Kind.PACK or (out.kind is Kind.ACKNOWLEDGEMENT
                                     and bool(out.context.get("with_pack")))


def attachments_for(out: Outgoing, catalog: Catalog, settings: Settings
                    ) -> tuple[list[Attachment], list[tuple[str, str]]]:
    """The files a message carries, and the links given instead for files over the limit."""
    event = catalog.events.get(out.event_id) if out.event_id else None
    if event is None:
        return [], []
    attached: list[Attachment] = []
    links: list[tuple[str, str]] = []
    if carries_pack(out):
        limit = settings.limits.attach_max_bytes
        base = settings.limits.pack_base_url
        for item, path in pack_files(event, out.language, settings.paths.packs):
            size = path.stat().st_size
            if size > limit and base:
                links.append((item, f"{base.rstrip('/')}/{path.name}"))
            else:
                attached.append((path.name, _MIME.get(path.suffix, "application/octet-stream"),
                                 path.read_bytes()))
    if out.kind is Kind.CERTIFICATE:
        from mailer.certificate import certificate_file_name, certificate_pdf

        pdf = certificate_pdf(out.name, event, out.language)
        attached.append((certificate_file_name(event.id, out.language), "application/pdf",
                         pdf))
    return attached, links


def compose_message(out: Outgoing, compose: Callable[..., wire.WireMessage], catalog: Catalog,
                    settings: Settings, now: datetime) -> wire.WireMessage:
    """One message with its attachments, refused when it would exceed the size limit."""
    files, links = attachments_for(out, catalog, settings)
    msg = compose(out, now=now, attachments=files, links=links)
    if files:
        size = len(msg.data)
        if size > settings.smtp.max_message_bytes:
            raise ValueError(f"{size} bytes, over smtp.max_message_bytes; set "
                             "limits.pack_base_url so large files are linked")
    return msg


class Composer:
    """Renders outgoing messages from the templates folder; build once, compose many.

    ``catalog`` is a plain attribute: the daemon replaces it when schedules are reloaded.
    """

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.root = Path(settings.paths.templates)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.root),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                disabled_extensions=("txt",),
                                                default_for_string=False, default=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # A Composer's templates are fixed for its life: the daemon builds a new one on a
            # reload, after checking it. This also saves a stat() per template per message.
            auto_reload=False,
            # Never evict: the folder holds a bounded set of templates, and the default LRU
            # cache reorders a queue at every lookup (ten per message with the includes);
            # a plain dictionary made composing a reminder 9 % cheaper.
            cache_size=-1,
        )
        self.env.filters["de"] = french_de
        organiser = settings.organiser
        self._from = _format_address(_address(organiser.name, organiser.address))
        self._views: dict[tuple[int, str, str | None, int | None],
                          tuple[Event, dict[str, Any]]] = {}
        self._reply_tos: dict[str | None, str] = {}
        self._folders: dict[tuple[Kind, str], str] = {}
        self._has_html: dict[str, bool] = {}

    @property
    def domain(self) -> str:
        """The domain of the organiser's address: Message-IDs and calendar UIDs use it."""
        return self.settings.organiser.address.rpartition("@")[2] or "localhost"

    # -- the values templates see ------------------------------------------------------------

    def event_view(self, event: Event, lang: str, country: str | None = None,
                   utc_offset: int | None = None, seen_at: datetime | None = None
                   ) -> dict[str, Any]:
        """What templates know of an event (``event.title``, ``event.when_utc``...).

        Cached per event object, language, country and UTC offset (with the hour it was
        written: see ``localtime.local_zone``): a burst of reminders formats each event's
        dates once per language and time zone, not once per message.
        """
        if seen_at is not None:
            seen_at = seen_at.astimezone(timezone.utc).replace(minute=0, second=0,
                                                                microsecond=0)
        key = (id(event), lang, country, utc_offset, seen_at)
        cached = self._views.get(key)
        if cached is None or cached[0] is not event:   # an id is reused only after a reload
            cached = self._views[key] = (event, self._event_view(event, lang, country,
                                                                 utc_offset, seen_at))
        return dict(cached[1])

    def _event_view(self, event: Event, lang: str, country: str | None,
                    utc_offset: int | None, seen_at: datetime | None) -> dict[str, Any]:
        spec = event.series.spec
        local = local_span(event.start, event.end, lang, country, utc_offset, seen_at)
        return {
            "id": event.id,
            "title": event.title(lang),
            "series_title": event.series_title(lang),
            "description": _in_language(event.spec.description, lang, event.language),
            "day_utc": format_day(event.start, lang),
            "when_utc": format_span_utc(event.start, event.end, lang),
            "when_local": local.text,
            "local_note": local.note,
            "join_url": event.spec.join_url or "",
            "recorded": spec.recorded,
            "cancelled": event.cancelled,
            "language": event.language,
            "max_per_country": spec.max_per_country,
            "organisers": (format_list(event.organisers(lang), locale=lang)
                           if event.organisers(lang) else ""),
        }

    def template_context(self, out: Outgoing, lang: str, event: Event | None,
                         attachments: Sequence[Attachment],
                         links: Sequence[Link]) -> dict[str, Any]:
        """Every value a template may use; the Outgoing's context fills the extras."""
        ctx: dict[str, Any] = {**CONTEXT_DEFAULTS, **out.context}
        offset = ctx.get("utc_offset")
        offset = offset if isinstance(offset, int) else None
        seen = _aware(ctx.get("utc_offset_seen")) if offset is not None else None
        view = self.event_view(event, lang, out.country, offset, seen) if event else None
        labels = FIELD_LABELS.get(lang, FIELD_LABELS["en"])
        candidates = [self.event_view(self.catalog.events[c], lang, out.country, offset, seen)
                      for c in ctx["candidates"] if c in self.catalog.events]
        moved = {f"{key}_event": self.event_view(self.catalog.events[ctx[key]], lang,
                                                 out.country, offset)
                 if ctx[key] in self.catalog.events else None
                 for key in ("moved_to", "moved_from")}
        previous = ""
        start, end = _aware(ctx["previous_start"]), _aware(ctx["previous_end"])
        if start and end:
            previous = format_span_utc(start, end, lang)
        fallback = event.language if event else lang
        previous_title = _in_language(ctx["previous_title"], lang, fallback)
        if view is not None and previous_title == view["title"]:
            # Another language's title changed: this reader's reads as before.
            previous_title = ""
        ctx.update({
            "kind": out.kind.value,
            "lang": lang,
            "name": safe_display_name(out.name),
            "recipient": out.recipient,
            "country": out.country or "",
            "country_name": country_name(out.country, lang) if out.country else "",
            "organiser": self.settings.organiser.name,
            "organiser_address": self.settings.organiser.address,
            "reply_address": plus_address(self.settings.organiser.address, out.event_id),
            "event": view,
            "organisers": view["organisers"] if view else "",
            "max_per_country": view["max_per_country"] if view else 4,
            "show_link": bool(view and view["join_url"]) and (
                out.kind in _LINK_KINDS
                or (out.kind is Kind.ALREADY_REGISTERED and ctx["status"] == "confirmed")),
            "recorded": bool(view and view["recorded"] and out.kind in _RECORDED_KINDS),
            "cancel_hint": out.kind in _CANCELLABLE,
            # Whether cancelling frees a place (else it withdraws a request).
            "holds_place": out.kind in PLACE_KINDS or (
                out.kind is Kind.ALREADY_REGISTERED and ctx["status"] == "confirmed"),
            "calendar": _method(out.kind, ctx) is not None and event is not None,
            "left_seat_country": (country_name(str(ctx["left_seat"]), lang)
                                  if ctx["left_seat"] else ""),
            "substitute_country_names": [country_name(str(c), lang)
                                         for c in ctx["substitute_countries"]][:10],
            "labels": labels,
            "missing": [labels.get(m, m) for m in ctx["missing"]],
            "candidate_events": candidates,
            **moved,
            "previous_when_utc": previous,
            "previous_title": safe_display_name(previous_title, _MAX_LINE),
            "previous_join_url": (str(ctx["previous_join_url"])
                                  if ctx["previous_join_url"] is not None else None),
            "reason": safe_display_name(str(ctx["reason"]), _MAX_LINE),
            "unread_countries": [safe_display_name(str(c), _MAX_LINE)
                                 for c in ctx["unread_countries"]][:10],
            "sender": safe_display_name(str(ctx["sender"]), _MAX_LINE),
            # What the mailer guessed of the participant ("name", "country"), shown so
            # that a reply can correct it (templates/<lang>/_inferred).
            "inferred": [f for f in ctx["inferred"] if f in INFERABLE],
            "subject": safe_display_name(str(ctx["subject"]), _MAX_LINE),
            "attachments": [name for name, _, _ in attachments],
            "links": list(links),
        })
        return ctx

    # -- rendering ---------------------------------------------------------------------------

    def _folder(self, kind: Kind, lang: str) -> str:
        folder = self._folders.get((kind, lang))
        if folder is None:
            folder = self._folders[(kind, lang)] = self._find_folder(kind, lang)
        return folder

    def _find_folder(self, kind: Kind, lang: str) -> str:
        if kind in STAFF_KINDS:
            return "staff"
        if lang in LANGUAGES and (self.root / lang / f"{kind.value}.txt").is_file():
            return lang
        # A missing translation must not stop the message: English is always shipped.
        return "en"

    def _render(self, name: str, ctx: dict[str, Any], kind: Kind) -> str:
        try:
            return self.env.get_template(name).render(ctx)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError([Problem(str(self.root / exc.name), kind.value,
                                         "template missing")]) from None
        except jinja2.TemplateSyntaxError as exc:
            file = exc.filename or str(self.root / (exc.name or name))
            raise TemplateError([Problem(file, kind.value, f"syntax: {exc.message}",
                                         exc.lineno)]) from None
        except jinja2.TemplateError as exc:
            file, line = _template_frame(exc.__traceback__, self.root, name)
            raise TemplateError([Problem(file, kind.value, str(exc.message or exc),
                                         line)]) from None

    def render(self, kind: Kind, lang: str, ctx: dict[str, Any]) -> tuple[str, str, str | None]:
        """The (subject, plain text, HTML or None) of one message; raises TemplateError."""
        folder = self._folder(kind, lang)
        subject = self._render(f"{folder}/{kind.value}.subject.txt", ctx, kind)
        subject = safe_display_name(subject, _MAX_LINE)
        ctx = {**ctx, "subject_line": subject}
        text = self._render(f"{folder}/{kind.value}.txt", ctx, kind)
        html = None
        name = f"{folder}/{kind.value}.html"
        has_html = self._has_html.get(name)
        if has_html is None:
            has_html = self._has_html[name] = (self.root / name).is_file()
        if has_html:
            html = self._render(name, ctx, kind)
        return subject, text, html

    # -- the message -------------------------------------------------------------------------

    def _event(self, event_id: str | None) -> Event | None:
        if event_id is None:
            return None
        try:
            return self.catalog.event(event_id)
        except KeyError:
            raise ScheduleError([Problem(str(self.settings.paths.schedules), "event",
                                         f"unknown event {event_id!r}: it is no longer in the "
                                         "schedules")]) from None

    def compose(self, out: Outgoing, *, now: datetime, attachments: Sequence[Attachment] = (),
                links: Sequence[Link] = ()) -> wire.WireMessage:
        """The email for one Outgoing row, ready for SMTP; ``now`` is its Date and DTSTAMP."""
        event = self._event(out.event_id)
        lang = out.language if out.language in LANGUAGES else "en"
        if out.kind in STAFF_KINDS:
            lang = "en"
        ctx = self.template_context(out, lang, event, attachments, links)
        subject, text, html = self.render(out.kind, lang, ctx)
        if out.event_id:
            subject = f"{subject} [{out.event_id}]"

        organiser = self.settings.organiser
        to, recipient = _recipient_header(out.name, out.recipient)
        message_id = out.message_id(self.domain)
        alternative = [wire.text(text, "plain")]
        if html is not None:
            alternative.append(wire.text(html, "html"))
        parts: list[wire.Part] = []
        method = _method(out.kind, out.context)
        if method and event is not None:
            ics = build_calendar(event, method=method, attendee_email=out.recipient,
                                 attendee_name=safe_display_name(out.name),
                                 sequence=out.sequence, organiser_name=organiser.name,
                                 organiser_address=organiser.address, lang=lang, stamp=now)
            alternative.append(wire.text(ics.decode("utf-8"), "calendar", method=method))
            parts.append(wire.attachment(ics, "application/ics", "invite.ics"))
        for filename, mimetype, data in attachments:
            parts.append(wire.attachment(data, mimetype, safe_display_name(filename)))
        root = wire.multipart("alternative", alternative, wire.boundary(message_id, 1))
        if parts:
            root = wire.multipart("mixed", [root, *parts], wire.boundary(message_id, 0))

        # Every header value is made here from clean parts, never from raw text: names pass
        # through safe_display_name, and non-ASCII goes into RFC 2047 encoded words.
        fields = [
            ("From", self._from),
            ("To", to),
            ("Reply-To", self._reply_to_header(out)),
            ("Subject", _header_text(subject)),
            ("Date", format_datetime(now)),
            ("Message-ID", message_id),
        ]
        parent = _message_id(out.in_reply_to)
        if parent:
            fields += [("In-Reply-To", parent), ("References", parent)]
        fields += [
            ("Auto-Submitted", "auto-replied" if out.kind in ANSWER_KINDS else "auto-generated"),
            # Asks Exchange not to answer us with out-of-office notices (mail loops).
            ("X-Auto-Response-Suppress", "OOF, AutoReply"),
            # The kind on the wire (subjects are templates staff edit): for tests and filters.
            ("X-Mailer-Kind", out.kind.value),
            ("Content-Language", lang),
        ]
        return wire.WireMessage(sender=organiser.address, recipient=recipient,
                                data=wire.message(fields, root))

    def _reply_to_header(self, out: Outgoing) -> str:
        """The Reply-To value, the same for every message of one event (so made once)."""
        if out.kind in STAFF_KINDS:
            return _format_address(self._reply_to(out))
        cached = self._reply_tos.get(out.event_id)
        if cached is None:
            cached = self._reply_tos[out.event_id] = _format_address(self._reply_to(out))
        return cached

    def _reply_to(self, out: Outgoing) -> Address:
        organiser = self.settings.organiser
        if out.kind in STAFF_KINDS and out.context.get("reply_to"):
            # The digest's own reply address (with its token): replies to it act.
            return Address(display_name=safe_display_name(organiser.name),
                           addr_spec=str(out.context["reply_to"]))
        if out.kind is Kind.STAFF_QUESTION and out.context.get("sender"):
            # Staff answer the participant directly by replying to the forwarded question.
            try:
                return Address(addr_spec=safe_display_name(str(out.context["sender"])))
            except (ValueError, IndexError):
                pass
        return Address(display_name=safe_display_name(organiser.name),
                       addr_spec=plus_address(organiser.address, out.event_id))

    # -- checks and previews -----------------------------------------------------------------

    def check_templates(self, catalog: Catalog | None = None) -> list[Problem]:
        """Every template missing for a language the events use, or failing to render."""
        catalog = catalog if catalog is not None else self.catalog
        # Participants get their own language whatever the event's: every language folder
        # staff keep is checked, besides English and the events' languages.
        langs = sorted({"en"} | {e.language for e in catalog.events.values()}
                       | {lang for lang in LANGUAGES if (self.root / lang).is_dir()})
        wanted = [(lang, kind, ("subject.txt", "txt", "html"))
                  for lang in langs for kind in PARTICIPANT_KINDS]
        wanted += [("staff", kind, ("subject.txt", "txt")) for kind in STAFF_KINDS]
        problems: list[Problem] = []
        saved, self.catalog = self.catalog, catalog
        try:
            for folder, kind, suffixes in wanted:
                missing = [s for s in suffixes
                           if not (self.root / folder / f"{kind.value}.{s}").is_file()]
                for suffix in missing:
                    problems.append(Problem(str(self.root / folder / f"{kind.value}.{suffix}"),
                                            kind.value, "template missing"))
                if missing:
                    continue
                lang = "en" if folder == "staff" else folder
                problems.extend(self._try_sample(kind, lang, catalog))
        finally:
            self.catalog = saved
        return problems

    def _try_sample(self, kind: Kind, lang: str, catalog: Catalog) -> list[Problem]:
        events = sorted(catalog.events.values(), key=lambda e: (e.language != lang, e.start))
        event = events[0] if events else None
        out = sample_outgoing(kind, lang, event, [e.id for e in events[1:3]])
        try:
            self.compose(out, now=SAMPLE_NOW, attachments=SAMPLE_ATTACHMENTS,
                         links=SAMPLE_LINKS)
        except TemplateError as exc:
            return exc.problems
        return []

    def preview(self, kind: str, event_id: str | None, lang: str, to: str, name: str,
                now: datetime, country: str | None = None,
                attach: Callable[[Outgoing], tuple[Sequence[Attachment], Sequence[Link]]]
                | None = None, inferred: Sequence[str] = ()) -> bytes:
        """One message rendered as ``.eml`` bytes, for ``mailer preview``.

        ``attach`` gives the files and links the message carries (the outbox's rule), so the
        preview is exactly what would be sent. ``inferred``: what the message says the
        mailer guessed (``INFERABLE``); none by default, as for most participants.
        """
        try:
            chosen = Kind(kind)
        except ValueError:
            known = ", ".join(k.value for k in Kind)
            raise UsageError(f"unknown message kind {kind!r} (one of: {known})") from None
        if event_id is not None and event_id not in self.catalog.events:
            raise UsageError(f"unknown event {event_id!r}")
        event = self.catalog.events.get(event_id) if event_id else None
        # Only a clarification ever names other sessions (the rules fill candidates for
        # nothing else): a preview listing some under a refusal or a cancellation would show
        # staff a paragraph no participant receives.
        others = ([e for e in self.catalog.events if e != event_id][:2]
                  if chosen is Kind.CLARIFICATION else [])
        out = sample_outgoing(chosen, lang, event, others, to=to, name=name, country=country,
                              inferred=inferred)
        files, links = attach(out) if attach else ((), ())
        return self.compose(out, now=now, attachments=files, links=links).data

    def tells_guesses(self, kind: Kind, lang: str) -> bool:
        """Whether this kind's text says what the mailer guessed, when it guessed."""
        name = f"{self._folder(kind, lang)}/{kind.value}.txt"
        try:
            source = self.env.loader.get_source(self.env, name)[0] if self.env.loader else ""
        except jinja2.TemplateNotFound:
            return False
        return "_inferred" in source


def _method(kind: Kind, context: Mapping[str, Any]) -> Literal["REQUEST", "CANCEL"] | None:
    """The calendar part a message carries: a CANCEL only for someone who has the entry."""
    if kind in CALENDAR_KINDS:
        return "REQUEST"
    if kind in CANCEL_KINDS:
        # ``status`` is the registration's when the message was decided: a request that
        # waited (waiting list, review) never had a calendar entry to remove.
        return "CANCEL" if context.get("status") in ("confirmed", "", None) else None
    if kind in LEFT_SEAT_KINDS and context.get("left_seat"):
        # A corrected country lost them their seat: the entry it gave them is removed.
        return "CANCEL"
    return None


def _message_id(value: str | None) -> str | None:
    """A Message-ID fit for In-Reply-To, or None: it may come from hostile mail."""
    if not value:
        return None
    value = value.strip()
    if not value.startswith("<"):
        value = f"<{value}>"
    return value if value.isascii() and _MSGID.fullmatch(value) else None


def _template_frame(tb: TracebackType | None, root: Path, fallback: str) -> tuple[str, int | None]:
    """The template file and line a render error happened in (Jinja keeps them in the trace)."""
    file, line = str(root / fallback), None
    base = str(root.resolve())
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith(base) or name.startswith(str(root)):
            file, line = name, tb.tb_lineno
        tb = tb.tb_next
    return file, line


SAMPLE_NOW = datetime(2020, 7, 1, 9, 0, tzinfo=timezone.utc)
SAMPLE_ATTACHMENTS: tuple[Attachment, ...] = (
    ("factsheet.pdf", "application/pdf", b"%PDF-1.4 sample\n"),)
SAMPLE_LINKS: tuple[Link, ...] = (("Slides", "https://example.org/packs/slides.pptx"),)


SAMPLE_DIGEST: dict[str, Any] = {
    "id": 1, "day": "2020-07-01", "since": "2020-06-30T08:00+00:00",
    "until": "2020-07-01T08:00+00:00",
    "new": [{"event": "africa-fr", "country": "SN", "country_name": "Senegal",
             "status": "confirmed", "count": 2}],
    "waiting": [{"ref": "R12", "event": "africa-fr", "country": "FR", "name": "Jean Martin",
                 "email": "jean.martin@example.org", "organisation": "Ministry of Justice",
                 "position": "Prosecutor", "since": "2020-06-30T10:00+00:00",
                 "why": "France is not invited to this event"}],
    "too_late": [{"ref": "R9", "event": "asia-en", "country": "US", "name": "Ann Lee",
                  "email": "ann.lee@example.org", "organisation": "", "position": "",
                  "since": "2020-06-20T10:00+00:00",
                  "why": "the event started at 2020-06-24 07:00 UTC: too late to decide"}],
    "uninvited": [{"event": "africa-fr", "country": "KE", "confirmed": 2, "waiting": 1,
                   "refs": "R3 R4 R7"}],
    "questions": [{"at": "2020-06-30T11:00+00:00", "event": "africa-fr",
                   "sender": "awa.diop@example.org", "subject": "Slides?", "status": "sent"}],
    "unplaced": [{"ref": "M7", "at": "2020-06-30T12:00+00:00", "sender": "x@example.org",
                  "intent": "unknown", "why": "unreadable: clarification asked"}],
    "failed": [{"id": 41, "to": "kofi@example.org", "kind": "acknowledgement",
                "event": "africa-fr", "error": "550 5.1.1 No such user", "attempts": 1}],
    "quarantined": [{"ref": "M9", "at": "2020-06-30T13:00+00:00", "sender": "y@example.org",
                     "why": "too large (30000000 bytes, limit 25000000)"}],
    "coming": [{"at": "2020-07-02T08:00+00:00", "event": "africa-fr", "what": "reminder",
                "count": 12},
               {"at": "2020-07-02T09:00+00:00", "event": "africa-fr", "what": "starts",
                "count": 0}],
}


def sample_outgoing(kind: Kind, lang: str, event: Event | None, candidates: list[str], *,
                    to: str = "awa.diop@example.org", name: str = "Awa Diop",
                    country: str | None = "SN",
                    inferred: Sequence[str] = ("country",)) -> Outgoing:
    """A plausible Outgoing of ``kind`` for checks and previews (every context key filled;
    ``inferred``: what it says the mailer guessed)."""
    event_id = event.id if event else None
    previous = (event.start - timedelta(days=1)) if event else SAMPLE_NOW
    context: dict[str, Any] = {
        "reason": "sample reason", "candidates": candidates, "missing": ["country"],
        "unread_countries": ["Atlantis"], "inferred": list(inferred),
        "text": "Could you tell me whether the slides will be shared?",
        "sender": to, "subject": "Question about the webinar", "status": "confirmed",
        "problems": ["schedules/sample.toml:3: event[0].end: end must be after start"],
        "previous_start": previous.isoformat(),
        "previous_end": (previous + timedelta(hours=1)).isoformat(),
        "previous_join_url": "https://zoom.us/j/0000000000",
        "previous_title": {"en": "Former title", "fr": "Ancien titre", "es": "Título anterior"},
        "digest": SAMPLE_DIGEST,
        "reply_to": "webinars+digest-1-0123456789abcdef01234567@example.org",
        "results": [{"ok": True, "lines": ["approve R12: done", "R12 Awa Diop (SN), "
                                           "africa-fr: review -> confirmed"]},
                    {"ok": False, "lines": ["reject R99 why: not done: R99: no such "
                                            "registration"]}],
        "unread": ["not a command: thanks"], "sent_to": "webinars@example.org",
    }
    return Outgoing(key=outbox_key(kind, to, event_id, "sample"), kind=kind, recipient=to,
                    language=lang, event_id=event_id, name=name, country=country, sequence=1,
                    context=context)
