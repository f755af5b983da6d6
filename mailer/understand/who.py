"""Who is registering: the participants a reply writes, as labelled fields, tables or list lines.

Hand-written, and why: registration replies are short, semi-structured forms ("Nom : Awa
Diop") in three languages; no library reads labelled fields or delegation lists, so small
regular expressions over accent-folded, casefolded lines do it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from mailer.countries import resolve_country
from mailer.domain import Participant, normalise_email
from mailer.understand.country import country_in_text, country_of_address
from mailer.understand.folding import fold, fold_with_map, wordset
from mailer.understand.prose import (
    EMAIL,
    NOT_NAMES,
    Person,
    clean_name,
    people_in_prose,
    sign_off,
)

MAX_LINE = 1_000            # longer lines are not forms: only their start is read for fields
MAX_VALUE = 200             # a field value longer than this is cut
MAX_RECORDS = 100           # participants read from one reply (a delegation is a few people)
MAX_ROW_TRIES = 200         # lines tried as "name, position, ..." rows (each resolves countries)

def named_or_sender(text: str, sender: str) -> tuple[Participant, ...]:
    """The addresses a cancellation or certificate request names, else the sender."""
    named: list[str] = []
    for match in EMAIL.finditer(text[:20_000]):
        address = normalise_email(match.group(0))
        if address not in named:
            named.append(address)
    return tuple(Participant(email=a) for a in named[:20]) or (Participant(email=sender),)


def participants_of(records: list[Record], sender: str) -> tuple[Participant, ...]:
    """Records as participants: a lone record without address is the sender."""
    if not records:
        return (Participant(email=sender),)
    single = len(records) == 1
    out: list[Participant] = []
    for record in records:
        email_addr = record.email or (sender if single else "")
        country_text = record.country
        out.append(Participant(
            email=email_addr, name=record.name, organisation=record.organisation,
            position=record.position, country_text=country_text,
            country=resolve_country(country_text) if country_text else None))
    return tuple(out)


def registration_reason(participants: tuple[Participant, ...], sender: str) -> str:
    count = len(participants)
    head = "registration" if count == 1 else f"registration of {count} participants"
    gaps: list[str] = []
    for number, p in enumerate(participants, start=1):
        lacks = [label for label, value in (("name", p.name), ("email", p.email),
                                            ("country", p.country)) if not value]
        if p.country_text and not p.country:
            lacks[lacks.index("country"):lacks.index("country") + 1] = [
                f"country ({p.country_text!r} not recognised)"]
        who = "" if count == 1 else f" for participant {number}"
        if lacks:
            gaps.append(f"missing {', '.join(lacks)}{who}")
        if p.inferred:
            gaps.append(f"{' and '.join(p.inferred)} inferred{who}")
    if len(gaps) > 5:   # the reason is for people reading a log line
        gaps = [*gaps[:5], f"and {len(gaps) - 5} more incomplete"]
    return "; ".join([head, *gaps])


# --------------------------------------------------------------------------- form fields


@dataclass
class Record:
    """One participant as written in a reply, before the country is resolved."""

    name: str = ""
    first: str = ""
    last: str = ""
    country: str = ""
    organisation: str = ""
    position: str = ""
    email: str = ""
    fields: set[str] = field(default_factory=set)
    loose: bool = False     # read from a bare list line, not from labels or a table

    def set(self, name: str, value: str) -> None:
        setattr(self, name, value)
        self.fields.add(name)

    def finish(self) -> Record:
        """Join first and last names; "Prénom" then "Nom" make one name."""
        if not self.name and (self.first or self.last):
            self.name = " ".join(p for p in (self.first, self.last) if p)
        elif self.first and self.first.casefold() not in self.name.casefold():
            self.name = f"{self.first} {self.name}"
        elif self.last and self.last.casefold() not in self.name.casefold():
            self.name = f"{self.name} {self.last}"    # "Nombre: Carolina", "Apellido: Vega"
        return self

    @property
    def is_person(self) -> bool:
        return bool(self.name or self.email or (self.country and self.fields - {"country",
                                                                                 "organisation"}))

    @property
    def is_shared(self) -> bool:
        """Only a country and/or organisation: it applies to the whole reply."""
        return bool(self.fields) and self.fields <= {"country", "organisation"}


# Labels per field, as regular expressions over folded text; tried in this order, so "first
# name" is read before "name". Accents are folded ("prénom" is "prenom").
_LABELS: tuple[tuple[str, str], ...] = (
    ("first", r"first ?names?|given names?|forenames?|prenoms?|nombres? de pila|primeiro nome"),
    ("last", r"last ?names?|surnames?|family names?|nom de famille|apellidos?|apelidos?"
             r"|sobrenomes?"),
    ("name", r"(?:full |your |complete )?names?(?: and surnames?)?(?: of (?:the )?participants?)?"
             r"|participant'?s? names?|nom (?:et|&|/) ?prenoms?|prenoms? (?:et|&|/) ?noms?"
             r"|noms? complets?|noms?(?: du participant)?|nombres? (?:y|&|/) ?apellidos?"
             r"|apellidos? (?:y|&|/) ?nombres?|nombres? completos?|nombres?"
             r"|participante?(?: ?(?:n[o°º]\.? ?)?\d{1,2})?|name/surname"
             r"|nome(?: completo| e apelidos?| e sobrenome)?"),
    ("country", r"(?:your |home )?country(?: represented| of origin)?|countries|pays"
                r"(?: represente)?|pais|nationality|nationalite|nacionalidad"),
    ("organisation", r"organi[sz]ations?|organismes?|institutions?|institucion|organizacion"
                     r"|ministry|ministere|ministerio|agency|department|departement"
                     r"|departamento|entity|entite|entidad|employer|administration"
                     r"|organi[sz]ation/institution|institution/organi[sz]ation|service"
                     r"|instituicao|organizacao|orgao|entidade|structure|estrutura"),
    ("position", r"(?:job )?(?:position|title|function)s?|fonctions?|postes?|cargos?|puestos?"
                 r"|titre|designation|rank|grade|role|funcao|posto"),
    ("email", r"(?:your )?e-?mail(?: address)?|email address|courriel|adresse (?:electronique"
              r"|e-?mail|mail|courriel)|mail|correo(?: electronico| e| -e|-e)?"
              r"|direccion de correo(?: electronico)?|correio e(?:le|lec)tronico"
              r"|endereco (?:de )?e-?mail"),
)
_FIELD_NAMES = {name for name, _ in _LABELS}
_BULLET = r"[ \t>*_•·◦▪-]*+(?:(?:participant|participante)?\s*(?:n[o°º]\.? ?)?\d{1,2}[.)]\s+)?"
_SEP = r"[ \t]*[*_]*[ \t]*(?:[:=]|\t|-(?= ))[ \t]*[*_]*[ \t]*"
_LABEL_LINES = tuple(
    (name, re.compile(rf"{_BULLET}[*_]*[ \t]*(?:{labels})(?:[ \t]*\([^)]{{0,40}}\))?{_SEP}"))
    for name, labels in _LABELS)
_CELL_LABELS = tuple((name, re.compile(rf"(?:{labels})")) for name, labels in _LABELS)
# A label inside a line ("Name: Kemar Brown, Position: Detective Inspector, Country: ...");
# only with a colon or "=", so "Ministry of Justice, Department of ..." stays one value.
_INLINE_LABELS = tuple(
    (name, re.compile(rf"(?:\*\*?)?(?:{labels})(?:[ \t]*\([^)]{{0,40}}\))?[ \t]*\**[ \t]*"
                      rf"(?:[:=]|-(?= )|(?<= )[–—](?= ))[ \t]*\**[ \t]*"))
    for name, labels in _LABELS)
_INLINE_CUT = re.compile(r"[,;|/:\t]|\s{2,}|\s[-–—]\s")
_NUMBERING = re.compile(r"[ \t>*_#-]*(?:(?:participant|participante|delegate|delegue|delegado)"
                        r"[ \t]*(?:n[o°º]\.? ?)?\d{1,2}|\d{1,2}[.)])[ \t]*[:.)*_-]*[ \t]*")
_TABLE_RULE = re.compile(r"[\s|:+-]+")


def read_participants(text: str) -> list[Record]:
    """Every participant a reply writes: labelled blocks, lines of a list, or rows of a table.

    A field that appears again starts a new participant, as does a numbering line
    ("Participant 2", "2."); a record holding only a country or organisation applies to
    every participant that lacks one.
    """
    records: list[Record] = []
    current = Record()
    header: list[str | None] | None = None
    lines = text.splitlines()
    tries = 0

    def close() -> None:
        nonlocal current
        if current.fields:
            records.append(current.finish())
        current = Record()

    for index, line in enumerate(lines[:5_000]):
        line = line[:MAX_LINE]
        if not line.strip():
            header = None
            continue
        folded, where = fold_with_map(line)
        cells = _cells(line)
        columns = _table_header(cells)
        if columns is not None:
            close()
            header = columns
            continue
        if header is not None and len(cells) >= 2 and not _TABLE_RULE.fullmatch(line):
            close()
            records.append(_from_columns(header, cells))
            continue
        inline = _inline_fields(line, folded, where)
        if inline:
            for name, value in inline:
                if name in current.fields:
                    close()
                current.set(name, value)
            continue
        labelled = _labelled(line, folded, where)
        if labelled is not None:
            name, value = labelled
            if not value and index + 1 < len(lines):
                value = _next_value(lines[index + 1][:MAX_LINE])
            value = _clean_value(name, value)
            if not value:
                continue
            if name in current.fields:
                close()
            current.set(name, value)
            continue
        if _NUMBERING.fullmatch(folded):
            close()
            continue
        if _TABLE_RULE.fullmatch(line) and "|" in line:
            continue
        row = None
        # A line cut only by dashes ("Ana Silva – Delegada – Polícia Federal – ana@pf.gov.br")
        # is a list row too: _list_row splits at the dashes.
        if (len(cells) >= 2 or "<" in line or _DASHED.search(line)) \
                and tries < MAX_ROW_TRIES:
            tries += 1
            row = _list_row(line, cells)
        if row is not None:
            close()
            records.append(row)
    close()
    return _share_fields([r for r in records if r.is_person or r.is_shared])[:MAX_RECORDS]


def _labelled(line: str, folded: str, where: list[int]) -> tuple[str, str] | None:
    for name, pattern in _LABEL_LINES:
        match = pattern.match(folded)
        if match:
            return name, line[where[match.end()]:] if match.end() < len(where) else ""
    return None


def _inline_fields(line: str, folded: str, where: list[int]) -> list[tuple[str, str]]:
    """Two or more labelled fields written on one line, in order; [] for anything else."""
    found: list[tuple[int, str, int]] = []     # (label start, field, value start), folded
    starts = [0, *(m.end() for m in _INLINE_CUT.finditer(folded))]
    for start in starts[:200]:
        while start < len(folded) and folded[start] in " \t":
            start += 1
        if found and start < found[-1][2]:
            continue
        for name, pattern in _INLINE_LABELS:
            match = pattern.match(folded, start)
            if match:
                found.append((start, name, match.end()))
                break
    if len(found) < 2:
        return []
    fields: list[tuple[str, str]] = []
    for index, (_start, name, value_start) in enumerate(found):
        value_end = found[index + 1][0] if index + 1 < len(found) else len(folded)
        value = line[where[value_start]:where[value_end]].strip(" \t,;|/–—-")
        value = _clean_value(name, value)
        if value:
            fields.append((name, value))
    return fields if len(fields) >= 2 else []


def _next_value(line: str) -> str:
    """The value written under an empty label, unless that line is itself a label."""
    folded, where = fold_with_map(line)
    if _labelled(line, folded, where) is not None or _NUMBERING.fullmatch(folded):
        return ""
    return line


def _clean_value(name: str, value: str) -> str:
    value = re.sub(r"\s+", " ", value).strip().strip("*_").strip()[:MAX_VALUE]
    value = re.sub(r"^\[(.*?)\]\(mailto:.*\)$", r"\1", value)   # html2text links
    value = value.rstrip(",;").strip()
    if name == "country" or (value.endswith(".") and len(value.rsplit(None, 1)[-1]) > 4):
        value = value.rstrip(".").strip()   # the end of a sentence, not "Inc." or "S.A."
    if name == "email":
        match = EMAIL.search(value)
        return normalise_email(match.group(0)) if match else ""
    if "@" in value and name in ("name", "first", "last"):
        return ""   # an address is not a name
    if name == "name":
        value = clean_name(value) or value   # "Dr. Ana Soto" is Ana Soto
    if name == "position" and not clean_name(value):
        return ""   # "Title: Mr" is a form of address, not a position
    return value


def _share_fields(records: list[Record]) -> list[Record]:
    """Give the country/organisation written once for the whole reply to those lacking it."""
    shared = [r for r in records if r.is_shared and not r.is_person]
    people = [r for r in records if r.is_person]
    if not people and shared:
        people = [shared[0]]    # "Country: Senegal" alone: the sender, from that country
    countries = {r.country for r in records if r.country}
    organisations = {r.organisation for r in shared if r.organisation}
    for person in people:
        if not person.country and len(countries) == 1:
            person.country = next(iter(countries))
        if not person.organisation and len(organisations) == 1:
            person.organisation = next(iter(organisations))
    return people


def _cells(line: str) -> list[str]:
    """A list or table line cut into cells (by |, tab, ; or ,), numbering removed."""
    line = re.sub(r"^[ \t>*_•·◦▪-]*(?:\d{1,2}[.)][ \t]+)?", "", line)
    for sep in ("|", "\t", ";", ","):
        if sep in line:
            cells = [c.strip().strip("*_").strip() for c in line.split(sep)]
            if sep == "|":
                cells = cells[1:] if cells and not cells[0] else cells
                cells = cells[:-1] if cells and not cells[-1] else cells
            return cells[:12]
    return [line.strip()]


def _table_header(cells: list[str]) -> list[str | None] | None:
    """The fields of a table's header row, or None when the cells are not all labels."""
    if len(cells) < 2:
        return None
    columns: list[str | None] = []
    for cell in cells:
        folded = fold(cell).strip(" :")
        name = next((n for n, rx in _CELL_LABELS if rx.fullmatch(folded)), None)
        if name is None:
            return None
        columns.append(name)
    return columns


def _from_columns(columns: list[str | None], cells: list[str]) -> Record:
    record = Record()
    for name, cell in zip(columns, cells, strict=False):
        value = _clean_value(name, cell) if name else ""
        if name and value:
            record.set(name, value)
    return record.finish()


_PARTICLES = wordset("de da do dos das del della di du van von der den bin ibn al el la le "
                       "y e")
_NAME_WORD = re.compile(r"[^\W\d_][\w'’.-]*")
_ORG_WORDS = re.compile(r"\b(?:ministr|minist[eè]re|ministerio|department|departement|"
                        r"departamento|office|agency|court|tribunal|cour|corte|police|policia|"
                        r"prosecut|parquet|fiscal[ií]a|embassy|ambassade|embajada|mission|"
                        r"misi[oó]n|universit|direction|direcci[oó]n|service|servicio|bureau|"
                        r"national|nacional|justice|justicia|interior|int[eé]rieur|affairs|"
                        r"affaires|asuntos|unit|unidad|unit[eé]|authority|autorit|autoridad|"
                        r"agence|agencia|institut|council|conseil|consejo|commission|comisi)",
                        re.IGNORECASE)
_ANGLE = re.compile(r"\s*(?P<name>[^<>@,;|\t]{2,80}?)\s*<(?P<email>[^<>\s]+@[^<>\s]+)>\s*")


def _name_like(cell: str) -> bool:
    """A person's name as a cell of a list line: two to six capitalised words (titles apart)."""
    words = clean_name(cell).split()
    if not 2 <= len(words) <= 6 or len(cell) > 80:
        return False
    if any(w[:1].isupper() and fold(w).strip(".,") in NOT_NAMES for w in words):
        return False
    return all(_NAME_WORD.fullmatch(w) and (w[0].isupper() or w.lower() in _PARTICLES)
               for w in words)


_DASHED = re.compile(r"\s[–—-]\s")


def _list_row(line: str, cells: list[str]) -> Record | None:
    """One participant written on one line: "Awa Diop, Magistrate, Ministry, awa@x.sn"."""
    angle = _ANGLE.fullmatch(re.sub(r"^[ \t>*_•·◦▪-]*(?:\d{1,2}[.)][ \t]+)?", "", line))
    if angle and _name_like(angle.group("name")):
        record = Record(loose=True)
        record.set("name", _clean_value("name", angle.group("name")))
        record.set("email", _clean_value("email", angle.group("email")))
        return record
    # "Ms. Jane Mwangi – Senior State Counsel, Office of the AG – jane@ag.go.ke": dashes
    # between spaces separate cells as commas do.
    cells = [part.strip() for cell in cells for part in _DASHED.split(cell)][:12]
    if len(cells) < 2 or not _name_like(cells[0]):
        return None
    record = Record(loose=True)
    record.set("name", _clean_value("name", cells[0]))
    rest: list[str] = []
    for cell in cells[1:]:
        if not cell:
            continue
        if "@" in cell and "email" not in record.fields:
            record.set("email", _clean_value("email", cell))
        elif "country" not in record.fields and resolve_country(cell):
            record.set("country", cell)
        else:
            rest.append(cell)
    if "email" not in record.fields and "country" not in record.fields:
        return None   # a sentence with commas, not a participant
    if "email" not in record.fields and not [cell for cell in rest if cell]:
        return None   # "Kingston, Jamaica", "Santo Domingo, República Dominicana": a place
    # Position and organisation: the one cell with an institution word is the organisation;
    # otherwise the order of the brief's example, "name, position, organisation".
    flagged = [bool(_ORG_WORDS.search(cell)) for cell in rest]
    if flagged.count(True) == 1 and len(rest) >= 2:
        org = flagged.index(True)
        rest = [c for i, c in enumerate(rest) if i != org] + [rest[org]]
    elif len(rest) == 1 and flagged == [True]:
        rest = ["", rest[0]]
    for target, cell in zip(("position", "organisation"), rest, strict=False):
        if cell:
            record.set(target, _clean_value(target, cell))
    return record



# --------------------------------------------------------------------------- free text


@dataclass(frozen=True)
class Sender:
    """Who sent the reply: the From address, and its display name when it is a person's."""

    address: str
    name: str = ""


def registrants(text: str, records: list[Record], sender: Sender) -> tuple[Participant, ...]:
    """The participants of a registration, completed from what the reply says in prose.

    Forms, tables and list lines come first (``records``). Without them, people described in
    sentences with their own address are registered ("my colleague, Mr. Tevita Taufa, Crown
    Counsel ... (ttaufa@...)"), else the sender. The sender's missing name, position,
    institution and country come from their own sentence ("I am ..."), then their sign-off;
    a country still missing comes from the countries the text names, then (a guess) from
    the participant's or the sender's government address, and a name still missing from the
    From display name (a guess). Guesses are listed in ``Participant.inferred``.
    """
    people = people_in_prose(text)
    own = next((p for p in people if p.source in ("introduction", "sentence")
                and (not p.email or p.email == sender.address)), None)
    signed = sign_off(text)
    if own is None or (signed is not None and same_person(own.name, signed.name)):
        own = _merge(own, signed)
    if records:
        base = list(participants_of(records, sender.address))
    else:
        others = [p for p in people if p.email != sender.address and (
            p.email or p.source in ("title", "colleague"))]
        base = [Participant(email=p.email, name=p.name, organisation=p.organisation,
                            position=p.position, country=p.country)
                for p in others[:MAX_RECORDS]]
        if not base or _ALSO_ME.search(fold(text)):
            base.insert(0, Participant(email=sender.address))
    skip = (own.start, own.end) if own is not None and own.source != "sign-off" else None
    text_country, certain = country_in_text(text, prefer=skip)
    single = len(base) == 1
    out: list[Participant] = []
    for p in base:
        inferred: list[str] = []
        is_sender = p.email == sender.address or (single and not p.email)
        if is_sender and own is not None and (not p.name or same_person(p.name, own.name)):
            p = replace(p, name=p.name or own.name, position=p.position or own.position,
                        organisation=p.organisation or own.organisation,
                        country=p.country or (None if p.country_text else own.country))
        if is_sender and not p.name and sender.name:
            p = replace(p, name=sender.name)
            inferred.append("name")
        if not p.country and not p.country_text:
            guess = None
            if text_country:
                guess = text_country
                if not certain:
                    inferred.append("country")
            else:
                guess = country_of_address(p.email) if p.email else None
                guess = guess or country_of_address(sender.address)
                if guess:
                    inferred.append("country")
            p = replace(p, country=guess)
        out.append(replace(p, inferred=tuple(inferred)))
    return tuple(out)


# "Please register me and my colleague ...", "inscribirnos", "nos inscrever".
_ALSO_ME = re.compile(
    r"\b(?:register|enrol+|inscribe|sign up|add|include)\s+(?:both\s+)?(?:me|myself)\s+"
    r"(?:and|as well as|together with|&)\b|\bmyself and\b|\b(?:m'inscrire|me inscrire)\s+"
    r"(?:ainsi que|et|avec)\b|\bmoi-meme et\b|\bnous inscrire\b|\b(?:inscribirme|"
    r"registrarme)\s+(?:a mi|y|junto)\b|\binscribirnos\b|\b(?:me inscrever|inscrever-me)\s+"
    r"(?:e|junto)\b|\bnos inscrever\b")


def same_person(one: str, other: str) -> bool:
    """Whether two written names are one person's ("Grace Wanjiru", "Grace W. Wanjiru")."""
    a, b = set(fold(one).split()), set(fold(other).split())
    return bool(a and b) and (a <= b or b <= a or len(a & b) >= 2)


def _merge(first: Person | None, then: Person | None) -> Person | None:
    """``first`` with what it lacks taken from ``then`` (the same person's sign-off)."""
    if first is None or then is None:
        return first or then
    return replace(first, position=first.position or then.position,
                   organisation=first.organisation or then.organisation,
                   country=first.country or then.country)
