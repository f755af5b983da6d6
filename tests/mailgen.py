"""Generated replies for end-to-end tests and benchmarks, with the outcome they must produce.

``wave(n, seed)`` makes ``n`` inbound messages in three languages and four client styles
(Outlook, Gmail, iPhone, HTML-only): single registrations, delegations, people registering
twice, the same message delivered twice, cancellations, auto-replies and bounces. ``Oracle``
applies the series' rules independently of the mailer, so a test can compare the store with
what must be there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime

INBOX = "webinars@secretariat.example"
LIMIT = 4

# event -> (language, countries and the ways people write them)
EVENTS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "africa-fr": ("fr", {"SN": ["Sénégal", "Senegal", "SENEGAL"],
                         "CI": ["Côte d'Ivoire", "Cote d'Ivoire", "Côte d’Ivoire"],
                         "ML": ["Mali"], "CD": ["RDC", "République démocratique du Congo"],
                         "MA": ["Maroc"]}),
    "africa-en": ("en", {"GH": ["Ghana"], "NG": ["Nigeria"], "KE": ["Kenya"],
                         "ZA": ["South Africa"], "CI": ["Ivory Coast"]}),
    "lac-es": ("es", {"DO": ["República Dominicana", "Republica Dominicana"],
                      "CO": ["Colombia"], "MX": ["México", "Mexico"], "PE": ["Perú", "Peru"],
                      "AR": ["Argentina"]}),
    "lac-en": ("en", {"TT": ["Trinidad & Tobago", "Trinidad and Tobago"],
                      "KN": ["St Kitts and Nevis", "Saint Kitts and Nevis"],
                      "JM": ["Jamaica"], "BB": ["Barbados"]}),
    "asia-pacific-en": ("en", {"PH": ["Philippines"], "FJ": ["Fiji"], "TO": ["Tonga"],
                               "LK": ["Sri Lanka"]}),
}
LABELS = {
    "en": ("Name", "Position", "Organisation", "Country", "Email"),
    "fr": ("Nom", "Fonction", "Organisation", "Pays", "Courriel"),
    "es": ("Nombre", "Cargo", "Organización", "País", "Correo electrónico"),
}
WANT = {"en": "I would like to register for the webinar.",
        "fr": "Je souhaite m'inscrire au webinaire.",
        "es": "Quisiera inscribirme en el webinario."}
DELEGATION = {"en": "Please register the following delegation:",
              "fr": "Veuillez inscrire la délégation suivante :",
              "es": "Por favor inscriban a la siguiente delegación:"}
CANCEL = {"en": "Unfortunately I can no longer attend. Please cancel my registration.",
          "fr": "Je ne pourrai malheureusement pas participer. Veuillez annuler mon inscription.",
          "es": "Lamentablemente no podré asistir. Por favor cancelen mi inscripción."}
FIRST = ["Awa", "Koffi", "Maria", "José", "Laura", "Kavita", "Siosaia", "Amina", "Pedro",
         "Fatou", "Ana", "Nadia", "Omar", "Lucía", "Grace", "Chidi", "Mele", "Ravi"]
LAST = ["Diop", "Kouassi", "Reyes", "Pérez", "Gómez", "Ramlogan", "Tonga", "Traoré", "Silva",
        "Ndiaye", "Rojas", "Haddad", "Mensah", "Fernández", "Okafor", "Fonua", "Perera"]
ROLES = ["Prosecutor", "Judge", "Legal adviser", "Second Secretary", "Police inspector"]
ORGS = ["Ministry of Justice", "Ministry of Foreign Affairs", "Prosecution Service",
        "Ministry of Interior", "Supreme Court"]


@dataclass(frozen=True)
class Person:
    email: str
    name: str
    country: str
    written: str


@dataclass
class Oracle:
    """The series' rules, applied independently of the mailer, in arrival order."""

    status: dict[tuple[str, str], str] = field(default_factory=dict)   # (event, email) -> status
    country: dict[tuple[str, str], str] = field(default_factory=dict)
    order: list[tuple[str, str]] = field(default_factory=list)
    ever_confirmed: set[tuple[str, str]] = field(default_factory=set)
    already: set[tuple[str, str]] = field(default_factory=set)

    def register(self, event: str, person: Person) -> None:
        key = (event, person.email)
        if self.status.get(key) in ("confirmed", "waiting"):
            self.already.add(key)
            return
        taken = sum(1 for k, s in self.status.items()
                    if k[0] == event and s == "confirmed" and self.country[k] == person.country)
        self.status[key] = "confirmed" if taken < LIMIT else "waiting"
        self.country[key] = person.country
        if key in self.order:
            self.order.remove(key)
        self.order.append(key)
        if self.status[key] == "confirmed":
            self.ever_confirmed.add(key)

    def cancel(self, event: str, email: str) -> None:
        key = (event, email)
        before = self.status.get(key)
        if before not in ("confirmed", "waiting"):
            return
        self.status[key] = "cancelled"
        if before == "confirmed":
            for other in self.order:
                if (other[0] == event and self.status[other] == "waiting"
                        and self.country[other] == self.country[key]):
                    self.status[other] = "confirmed"
                    self.ever_confirmed.add(other)
                    break


@dataclass
class Wave:
    """Generated messages (in arrival order) and the outcome they must produce."""

    messages: list[bytes]
    oracle: Oracle
    never_answered: set[str]          # senders of auto-replies and bounces
    bounced: set[str]


def _quote(lang: str, style: str, body_lines: list[str]) -> str:
    """The quoted invitation with its empty form, as each client lays it out."""
    form = "\n".join(f"{label}:" for label in LABELS[lang])
    original = f"Participant 1\n{form}\n\nParticipant 2\n{form}"
    if style == "outlook":
        head = {"en": "From: Webinars <webinars@secretariat.example>\nSent: Friday, 12 June "
                      "2020 10:00\nTo: Focal point\nSubject: Invitation",
                "fr": "De : Webinaires <webinars@secretariat.example>\nEnvoyé : vendredi 12 "
                      "juin 2020 10:00\nÀ : Point focal\nObjet : Invitation",
                "es": "De: Webinarios <webinars@secretariat.example>\nEnviado el: viernes, 12 "
                      "de junio de 2020 10:00\nPara: Punto focal\nAsunto: Invitación"}[lang]
        return "\n".join(body_lines) + f"\n\n________________________________\n{head}\n\n" \
            + original
    said = {"en": "On Fri, 12 Jun 2020 at 10:00, Webinars <webinars@secretariat.example> "
                  "wrote:",
            "fr": "Le ven. 12 juin 2020 à 10:00, Webinaires <webinars@secretariat.example> "
                  "a écrit :",
            "es": "El vie, 12 jun 2020 a las 10:00, Webinarios "
                  "<webinars@secretariat.example> escribió:"}[lang]
    quoted = "\n".join("> " + line for line in original.splitlines())
    sign = {"en": "Sent from my iPhone", "fr": "Envoyé de mon iPhone",
            "es": "Enviado desde mi iPhone"}[lang] if style == "iphone" else ""
    return "\n".join(body_lines) + (f"\n\n{sign}" if sign else "") + f"\n\n{said}\n\n{quoted}\n"


def _message(n: int, sender: str, event: str, lang: str, body_lines: list[str], style: str,
             *, headers: dict[str, str] | None = None, subject: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = f"webinars+{event}@secretariat.example"
    msg["Subject"] = subject or f"Re: Invitation [{event}]"
    msg["Date"] = format_datetime(datetime(2020, 6, 15, 9, tzinfo=timezone.utc))
    msg["Message-ID"] = f"<gen-{n}@clients.example>"
    for name, value in (headers or {}).items():
        msg[name] = value
    text = _quote(lang, style, body_lines)
    if style == "html":
        reply = "<br>".join(body_lines)
        form = "<br>".join(f"{label}:" for label in LABELS[lang])
        msg.set_content(
            f"<html><body><div>{reply}</div><div id=\"divRplyFwdMsg\"><b>From:</b> Webinars"
            f"<br><b>Sent:</b> Friday<br></div><div>{form}</div></body></html>",
            subtype="html")
    else:
        msg.set_content(text)
    return msg.as_bytes()


def wave(n: int = 200, seed: int = 7) -> Wave:
    """About ``n`` inbound messages and the registrations they must leave in the store."""
    rng = random.Random(seed)
    oracle = Oracle()
    messages: list[bytes] = []
    never: set[str] = set()
    bounced: set[str] = set()
    people: list[tuple[str, Person]] = []
    styles = ["outlook", "gmail", "iphone", "html"]
    count = 0

    def person(event: str) -> Person:
        nonlocal count
        count += 1
        code, spellings = rng.choice(list(EVENTS[event][1].items()))
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first.lower()[:3]}.{last.lower()[:4]}.{count}@gov-{code.lower()}.example"
        email = email.encode("ascii", "ignore").decode()
        return Person(email, f"{first} {last}", code, rng.choice(spellings))

    def block(lang: str, p: Person, with_email: bool) -> list[str]:
        name, pos, org, country, mail = LABELS[lang]
        lines = [f"{name}: {p.name}", f"{pos}: {rng.choice(ROLES)}",
                 f"{org}: {rng.choice(ORGS)}", f"{country}: {p.written}"]
        return lines + ([f"{mail}: {p.email}"] if with_email else [])

    while len(messages) < n:
        roll = rng.random()
        event = rng.choice(list(EVENTS))
        lang = EVENTS[event][0]
        style = rng.choice(styles)
        if roll < 0.55 or not people:                               # one person, themselves
            p = person(event)
            body = [{"en": "Dear colleagues,", "fr": "Bonjour,", "es": "Estimados:"}[lang], "",
                    WANT[lang], "", *block(lang, p, rng.random() < 0.5), "", "Regards"]
            messages.append(_message(len(messages), f"{p.name} <{p.email}>", event, lang, body,
                                     style))
            oracle.register(event, p)
            people.append((event, p))
        elif roll < 0.65:                                           # a delegation of 2 to 4
            focal = f"focal.{len(messages)}@mfa.example"
            group = [person(event) for _ in range(rng.randint(2, 4))]
            code = group[0].country
            group = [Person(p.email, p.name, code, group[0].written) for p in group]
            body = [DELEGATION[lang], ""]
            for i, p in enumerate(group, 1):
                body += [f"{i}.", *block(lang, p, True), ""]
            messages.append(_message(len(messages), f"Focal point <{focal}>", event, lang,
                                     body, "outlook" if style == "html" else style))
            for p in group:
                oracle.register(event, p)
                people.append((event, p))
        elif roll < 0.72:                                           # the same person again
            event, p = rng.choice(people)
            lang = EVENTS[event][0]
            body = [WANT[lang], "", *block(lang, p, False)]
            messages.append(_message(len(messages), f"{p.name} <{p.email}>", event, lang, body,
                                     style))
            oracle.register(event, p)
        elif roll < 0.78:                                           # delivered twice
            messages.append(messages[-1])
        elif roll < 0.88:                                           # a cancellation
            event, p = rng.choice(people)
            lang = EVENTS[event][0]
            messages.append(_message(len(messages), f"{p.name} <{p.email}>", event, lang,
                                     [CANCEL[lang], "", p.name], style,
                                     subject=f"Re: Confirmation [{event}]"))
            oracle.cancel(event, p.email)
        elif roll < 0.94:                                           # an auto-reply
            who = f"away.{len(messages)}@gov.example"
            never.add(who)
            messages.append(_message(len(messages), who, event, "en",
                                     ["I am out of the office until 1 July."], "gmail",
                                     headers={"Auto-Submitted": "auto-replied"},
                                     subject="Automatic reply: Invitation"))
        else:                                                       # a bounce
            gone = f"gone.{len(messages)}@gov.example"
            bounced.add(gone)
            never.add("mailer-daemon@mx.example")
            messages.append(_bounce(len(messages), gone))
    return Wave(messages, oracle, never, bounced)


def _bounce(n: int, gone: str) -> bytes:
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n"
            f"To: {INBOX}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <bounce-{n}@mx.example>\r\nAuto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
            "report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\n"
            "Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            f"<{gone}>: 550 5.1.1 User unknown\r\n\r\n--B\r\n"
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
            f"Final-Recipient: rfc822; {gone}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--B--\r\n").encode()
