"""Who is writing, when they say it in sentences: introductions, sign-offs and the From name.

People who register by mail often write no form at all: "I am Grace Wanjiru, Deputy Director at
the Office of the Director of Public Prosecutions, Kenya.", "Yes, count me in. Abdou Karim
Ndiaye, Ministry of the Interior, Senegal.", "Sou a Dra. Ana Paula Macuácua, Procuradora-Geral
Adjunta da República de Moçambique.", or only a sign-off block under "Kind regards,". This
module reads those, in English, French, Spanish and Portuguese.

Hand-written, and why: named-entity recognisers (spaCy and the like) need models of hundreds of
megabytes per language and still do not say which name is the writer's, which words are a
position and which an institution; the phrasings of official mail are few and regular. Every
pattern is bounded to one sentence or line, so the work is linear in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage

from mailer.understand.country import countries_in_text, country_in_text
from mailer.understand.folding import fold, fold_with_map, wordset

MAX_SENTENCES = 400         # sentences looked at in one reply
MAX_SENTENCE = 600          # characters of one sentence looked at

# An address written in text (also what ``who`` reads from form fields).
EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
                   r"(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)+", re.IGNORECASE)


@dataclass(frozen=True)
class Person:
    """Someone a reply describes in prose; empty strings for what it does not say."""

    name: str = ""
    position: str = ""
    organisation: str = ""
    country: str | None = None      # ISO code of a country written in their sentence
    email: str = ""
    start: int = 0                  # where their sentence or block is in the text
    end: int = 0
    source: str = ""                # introduction | sentence | title | colleague | address
                                    # | sign-off

    @property
    def span(self) -> tuple[int, int]:
        return self.start, self.end


# --------------------------------------------------------------------------- words

# Titles written before a name, dropped from it ("Atty.", "Dra.", "Mme", "Lic.").
HONORIFICS = wordset("""mr mrs ms miss mx dr dra drs sr sra srta srs lic licda licdo ing
    atty att hon prof m mme mlle mmes me mm dª sir madam insp det sgt amb h.e s.e exmo exma
    sn sa abg abog""")
_HONORIFIC = re.compile(r"(?:(?:mr|mrs|ms|miss|dr|dra|drs|sr|sra|srta|lic|licda|licdo|ing|"
                        r"atty|hon|prof|m|mme|mlle|me|insp|det|sgt|amb|exmo|exma|h\.e|s\.e|"
                        r"abg|abog)\.?|dª)$", re.IGNORECASE)
# Particles inside names ("Ana de la Cruz", "Luís da Silva", "Ibn Khaldun").
PARTICLES = wordset("de da do dos das del della di du van von der den bin ibn al el la le y "
                    "e ben ould")
# Words that start a line or a sentence but never a name.
NOT_NAMES = wordset("""dear hello hi good yes no ok okay thanks thank many kind kindly best
    warm regards greetings sincerely respectfully please attached herewith the this that
    these my our your we i you he she they it a an as at for from in of on to with and or
    bonjour bonsoir madame monsieur mesdames messieurs cher chere chers oui non merci
    cordialement salutations veuillez je nous vous le la les un une des objet ci-dessous
    buenos buenas buen estimado estimada estimados estimadas senor senora senores querido
    querida hola si gracias saludos atentamente cordialmente favor por adjunto yo nosotros
    mi mis su sus prezado prezada prezados prezadas caro cara caros exmos exmas senhor
    senhora senhores bom boa ola sim obrigado obrigada cumprimentos atenciosamente eu meu
    minha segue seguem em anexo monday tuesday wednesday thursday friday saturday sunday
    lundi mardi mercredi jeudi vendredi samedi dimanche lunes miercoles jueves viernes
    sabado webinar webinaire webinario workshop atelier
    taller session registration inscription inscripcion inscricao participant participants
    participante participantes name nom nombre nome country pays pais email courriel
    correo position fonction cargo organisation organization organisme institucion
    instituicao tel phone telephone telefono mobile cel fax www http https""")
# Words of positions and of institutions (folded), in the four languages.
_POSITION_WORDS = wordset("""director directors deputy prosecutor prosecutors attorney counsel
    judge justice magistrate officer inspector superintendent commissioner sergeant detective
    analyst advisor adviser specialist expert head chief manager coordinator secretary
    minister ambassador attache counsellor counselor consul diplomat legal investigator
    lawyer solicitor registrar clerk assistant associate senior principal junior crown agent
    engineer researcher lecturer professor captain lieutenant colonel major constable corporal
    focal directeur directrice procureur procureure substitut juge magistrat commissaire
    inspecteur officier conseiller conseillere chef charge chargee secretaire avocat avocate
    greffier analyste ingenieur capitaine commandant adjoint adjointe sous-directeur premier
    premiere general generale directora fiscal juez jueza magistrado magistrada comisario
    inspectora oficial asesor asesora jefe jefa coordinador coordinadora secretario secretaria
    consejero consejera agregado agregada abogado abogada perito subteniente teniente capitan
    procurador procuradora subdirector subdirectora encargado encargada especialista diretor
    diretora promotor promotora juiz juiza delegado delegada inspetor inspetora assessor
    assessora chefe coordenador coordenadora conselheiro conselheira adido adida advogado
    advogada escrivao adjunto adjunta auxiliar comisionado comisionada commissaire""")
_ORG_WORDS = wordset("""ministry ministries office department agency authority court courts
    tribunal police constabulary gendarmerie chambers unit division directorate secretariat
    commission service services embassy mission force bureau center centre institute council
    university judiciary parliament cabinet presidency prosecution prosecutions platform
    ministere direction cour parquet commissariat plateforme pole agence autorite conseil
    institut universite delegation brigade office gendarmerie surete structure cellule
    ministerio direccion fiscalia procuraduria policia corte juzgado unidad secretaria
    superintendencia consejo instituto universidad servicio comision embajada organismo
    poder defensoria cancilleria departamento agencia autoridad ministerio procuradoria
    procuradoria-geral policia diretoria coordenacao superintendencia conselho universidade
    servico comissao embaixada orgao assessoria gabinete tribunal delegacia""")
_ROLE_NAMES = wordset("""focal point secretariat secretaria team desk info contact admin
    administrator registry reception cabinet gabinete assessoria cooperation cooperacion
    cooperacao relations relaciones relacoes international internacional internacionais
    office bureau direction noreply no-reply webmaster mailbox""")


def _word_of(token: str) -> str:
    return fold(token).strip(".,;:'’()")


def _is_name_word(token: str) -> bool:
    if not token or not token[0].isupper() or any(ch.isdigit() for ch in token):
        return False
    word = _word_of(token)
    if not word or word in NOT_NAMES or word in _POSITION_WORDS or word in _ORG_WORDS:
        return False
    return bool(re.fullmatch(r"[^\W\d_](?:[^\W\d_]|['’.-](?=[^\W\d_]))*\.?", token))


def clean_name(text: str) -> str:
    """A name without titles, quotes or surrounding punctuation: "Dr. Ana Paula" → "Ana Paula"."""
    words = text.replace("\u00a0", " ").strip().strip("\"'").split()
    while words and (_HONORIFIC.fullmatch(words[0]) or fold(words[0]).strip(".") in HONORIFICS
                     or (len(words) > 2 and fold(words[0]) in _POSITION_WORDS)):
        words = words[1:]
    return " ".join(words).strip(" ,;:.-")


def name_at(text: str, start: int) -> tuple[str, int] | None:
    """The person's name that starts at ``start`` (after titles), and where it ends.

    Two to six capitalised words, with particles between them ("Rosa Elena de la Cruz");
    anything else (a position, an institution, a greeting) is not a name.
    """
    tokens = [(m.start() + start, m.group(0)) for m in
              re.finditer(r"\S+", text[start:start + 160])]
    i = 0
    while i < len(tokens) and i < 3 and (
            _HONORIFIC.fullmatch(tokens[i][1]) or fold(tokens[i][1]).strip(".") in HONORIFICS
            or (tokens[i][1] in ("a", "o", "la", "el", "le") and i + 1 < len(tokens)
                and _HONORIFIC.fullmatch(tokens[i + 1][1]))):
        i += 1
    words: list[str] = []
    end = start
    for offset, token in tokens[i:i + 10]:
        bare = token.rstrip(",.;:)")
        stop = bare != token
        if bare.startswith("("):
            break
        if _is_name_word(bare) or (words and fold(bare) in PARTICLES and not stop):
            words.append(bare)
            end = offset + len(bare)
        else:
            break
        if stop or len(words) == 6:
            break
    while words and fold(words[-1]) in PARTICLES:
        words.pop()
    if len(words) < 2:
        return None
    name = " ".join(words)
    return name, end


# --------------------------------------------------------------------------- sentences

# Abbreviations whose dot does not end a sentence.
_ABBREVIATION = re.compile(r"(?:\b(?:mr|mrs|ms|dr|dra|sr|sra|srta|lic|licda|atty|hon|prof|"
                           r"mme|mlle|insp|det|sgt|amb|st|no|nr|tel|ext|etc|av|avda|ref|p|"
                           r"e\.g|i\.e|[a-z])\.)$", re.IGNORECASE)
# A run of marks is matched from its first mark only: tried at every mark of 64 KB of "."
# (never followed by a space), "[.!?]+" read the rest of the run each time (28 s of CPU).
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]++(?=\s)|\n|:\s")


def sentences(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of ``text``: cut at ".", "!", "?", ":" and line ends."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.group(0).startswith(".") and _ABBREVIATION.search(text[max(0, start):
                                                                       match.end()][-8:]):
            continue
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
        if len(spans) >= MAX_SENTENCES:
            return spans
    if start < len(text):
        spans.append((start, len(text)))
    return spans


_INTRO = re.compile(
    r"\b(?:i am|i'm|my name is|this is|my full name is|je suis|je m'appelle|mon nom est|"
    r"je me nomme|soy|yo soy|me llamo|mi nombre (?:correcto |completo )?es|sou|eu sou|"
    r"(?:o )?meu nome (?:completo |correto )?e|chamo-me|me chamo)\s+")
_STARTS_TITLE = re.compile(r"\b(?:mr|mrs|ms|miss|dr|dra|sr|sra|srta|lic|licda|atty|hon|prof|m|"
                           r"mme|mlle|insp|det|sgt|amb|abg)\.?\s+(?=[^\W\d_])", re.IGNORECASE)


_COLLEAGUE = re.compile(r"\b(?:[Mm]y|[Oo]ur) colleague,?\s+|\b(?:[Mm]on|[Mm]a|[Nn]otre) "
                        r"coll[eè]gue,?\s+|\b(?:[Mm]i|[Nn]uestr[oa]) colega,?\s+|\b(?:[Mm]eu|"
                        r"[Mm]inha|[Nn]oss[oa]) colega,?\s+")


def people_in_prose(text: str) -> list[Person]:
    """Everyone the sentences of ``text`` describe: "I am X, position, institution, country"
    and "X, position, institution, country" (with their address when it is written)."""
    people: list[Person] = []
    for start, end in sentences(text):
        end = min(end, start + MAX_SENTENCE)
        sentence = text[start:end]
        starts: list[tuple[int, str]] = []
        if _INTRO.search(fold(sentence)):
            folded, where = fold_with_map(sentence)   # where the name starts in the text
            intro = _INTRO.search(folded)
            if intro:
                starts.append((start + where[intro.end()], "introduction"))
        first = len(sentence) - len(sentence.lstrip(" \t>*-•·–—0123456789.)"))
        starts.append((start + first, "sentence"))
        # "my colleague, Mr. Tevita Taufa, ...": a title inside a sentence names someone
        # else (nobody calls themselves "Mr.").
        starts += [(start + m.start(), "title") for m in _STARTS_TITLE.finditer(sentence)
                   if m.start() > first]
        # "my colleague Grace Wanjiru will attend in my place": named by the sender, so
        # someone else, even without a title.
        starts += [(start + m.end(), "colleague") for m in _COLLEAGUE.finditer(sentence)
                   if m.end() > first]
        for at, source in starts:
            person = _person_at(text, at, end, source)
            if person is not None:
                people.append(person)
                break
    found = people + _named_addresses(text, {p.email for p in people if p.email})
    # "my colleague Ama Boateng (ama.boateng@...)": the same person, found with the address.
    addressed = {fold(p.name) for p in found if p.email}
    return [p for p in found if p.email or p.source != "colleague"
            or fold(p.name) not in addressed]


def _named_addresses(text: str, known: set[str]) -> list[Person]:
    """People written as "Ms. Ama Boateng (ama@...)" or "la Fiscal María Torres (m@...)":
    the capitalised words just before an address are its owner's name."""
    out: list[Person] = []
    for match in EMAIL.finditer(text[:50_000]):
        address = match.group(0).lower()
        if address in known or len(out) >= 20:
            continue
        before = text[max(0, match.start() - 120):match.start()]
        before = re.sub(r"[\s(<\[:,–—-]+$", "", before)
        if before == text[max(0, match.start() - 120):match.start()]:
            continue   # the address is not set off from what precedes it
        if before.endswith(")") and "(" in before:
            # "Ms. Aisha Bello (Principal State Counsel, ...) – aisha@...": skip the aside.
            before = before[:before.rindex("(")].rstrip()
        words: list[str] = []
        for token in reversed(before.split()[-8:]):
            name_word = _is_name_word(token) and not token.endswith(",")
            if name_word or (words and fold(token) in PARTICLES):
                words.insert(0, token)
            else:
                break
        while words and fold(words[0]) in PARTICLES:
            words.pop(0)
        if len(words) >= 2:
            known.add(address)
            out.append(Person(clean_name(" ".join(words)), email=address,
                              start=match.start(), end=match.end(), source="address"))
    return out


def _person_at(text: str, at: int, end: int, source: str) -> Person | None:
    found = name_at(text[:end], at)
    if found is None:
        return None
    name, name_end = found
    rest = text[name_end:end]
    if source == "colleague" and not rest.lstrip().startswith(","):
        # "my colleague Grace Wanjiru will attend": the name alone, nothing described.
        return Person(clean_name(name), "", "", None, "", at, end, source)
    if source != "introduction" and not rest.lstrip().startswith(","):
        return None
    described = describe(_segments(rest))
    if source not in ("introduction", "colleague") and not (
            described.position or described.organisation or described.email):
        return None   # "Santo Domingo, República Dominicana" is a place, not a person
    return Person(clean_name(name), described.position, described.organisation,
                  described.country, described.email, at, end, source)


def _segments(text: str) -> list[str]:
    """A sentence's comma-separated parts, keeping commas inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch in ",|" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip(" .;:\t") for p in parts if p.strip(" .;:\t")]


# "Deputy Director at the Office of...", "substitut du Procureur près le Tribunal de...",
# "fiscal adjunta de la Procuraduría...", "Procurador da República no Ministério Público..."
_CONNECTOR = re.compile(r"\s(?:at|with|in|of|from|for|within|au|aux|a la|a l'|aupres d[eu]"
                        r"(?: la| l')?|pres (?:le|la|les)|du|de la|de l'|des|del|en la|en el|"
                        r"en|de|no|na|nos|nas|do|da|dos|das|junto (?:ao|a))\s+(?:the\s+)?",
                        re.IGNORECASE)
_LEAD = re.compile(r"^(?:(?:and|et|y|e)\s+)?(?:i am|i'm|i work as|working as|je suis|"
                   r"je travaille comme|soy|trabajo como|sou|trabalho como|actuellement|"
                   r"currently)\s+(?:(?:a|an|the|un|une|el|la|o|a)\s+)?", re.IGNORECASE)
# What may stand beside a country in a segment that is only a country ("Royaume du Maroc",
# "Kingston, Jamaica" is two segments already).
_STATE_WORDS = wordset("""republic of the kingdom state commonwealth federal federative
    plurinational islamic democratic people's peoples united republique royaume etat du de la
    des l republica reino estado de la del los las federativa plurinacional republica
    reino estado da do das dos""")


@dataclass(frozen=True)
class Description:
    position: str = ""
    organisation: str = ""
    country: str | None = None
    email: str = ""


def _words_folded(text: str) -> list[str]:
    return re.findall(r"[^\W\d_][\w'’-]*", fold(text))


def _kind(segment: str) -> str:
    """position | organisation | country | other, from the segment's first words."""
    words = _words_folded(segment)
    if not words:
        return "other"
    mentions = [m for m in countries_in_text(segment) if not m.denied]
    if mentions:
        outside = fold(segment[:mentions[0].start] + " " + segment[mentions[-1].end:])
        if all(w in _STATE_WORDS for w in re.findall(r"[^\W\d_]+", outside)):
            return "country"
    if words[0] in _ORG_WORDS or (len(words) > 1 and words[0] in ("the", "la", "le", "el", "o",
                                                                    "a", "l")
                                  and words[1] in _ORG_WORDS):
        return "organisation"
    if any(w in _POSITION_WORDS for w in words[:4]):
        return "position"
    if any(w in _ORG_WORDS for w in words) or segment[:1].isupper() and len(words) <= 2 \
            and segment.isupper():
        return "organisation"
    return "other"


def _split_position(segment: str) -> tuple[str, str]:
    """ "Deputy Director at the Office of X" → ("Deputy Director", "Office of X")."""
    for match in _CONNECTOR.finditer(segment):
        right = segment[match.end():]
        first = _words_folded(right)[:1]
        if first and first[0] in _ORG_WORDS and right[:1].isupper():
            return segment[:match.start()].strip(), right.strip()
    return segment, ""


def _without_country(org: str) -> tuple[str, str | None]:
    """ "Ministerio Público de Honduras" → ("Ministerio Público", "HN"); keeps names that
    merely start with a country ("Jamaica Constabulary Force")."""
    mentions = [m for m in countries_in_text(org) if not m.denied]
    if not mentions:
        return org, None
    last = mentions[-1]
    if org[last.end:].strip(" ).") == "":
        head = org[:last.start]
        cut = re.search(r"\s(?:of(?: the)?|de(?: la)?|del|du|de l'|da|do|des|das|dos|"
                        r"(?:of|de|da|du) (?:the |la )?(?:republic|r[eé]publique|rep[uú]blica|"
                        r"kingdom|royaume|reino|state|[eé]tat|estado) (?:of|du|de|da|del|do)"
                        r"(?: la| l')?)\s*$", head,
                        re.IGNORECASE)
        if cut and len(head[:cut.start()].split()) >= 2:
            return head[:cut.start()].strip(" ,(-"), last.code
        if head.rstrip().endswith("("):
            return head.rstrip()[:-1].strip(), last.code
    return org, last.code


def describe(segments: list[str]) -> Description:
    """Position, institution, country and address from the parts after a name."""
    position = organisation = email = ""
    country: str | None = None
    for raw in segments[:8]:
        found = EMAIL.search(raw)
        if found and not email:
            email = found.group(0).lower()
        segment = re.sub(r"\(?\s*" + re.escape(found.group(0)) + r"\s*\)?", "", raw).strip() \
            if found else raw
        segment = _LEAD.sub("", segment).strip(" -–—")
        if not segment:
            continue
        if re.match(r"(?:and|et|y|e|ou|or|o|but|mais|pero|mas)\s", segment):
            break   # "..., and the First Secretary": another clause, another person
        kind = _kind(segment)
        if kind == "country":
            country = country or next(m.code for m in countries_in_text(segment)
                                      if not m.denied)
        elif kind == "position" and not position:
            position, org = _split_position(segment)
            if org and not organisation:
                organisation, named = _without_country(org)
                country = country or named
            elif not org:
                # "Procuradora-Geral Adjunta da República de Moçambique": a trailing country.
                position, named = _without_country(position)
                country = country or named
        elif kind == "organisation":
            org, named = _without_country(segment)
            organisation = f"{organisation}, {org}" if organisation else org
            country = country or named
        elif kind == "other" and (position or organisation):
            break   # "..., for the webinar on 24 June": the description is over
    return Description(position[:200], organisation[:200], country, email)


# --------------------------------------------------------------------------- sign-offs

_CLOSINGS = re.compile(
    r"^(?:(?:with )?(?:best|kind|warm|warmest|kindest|many)?\s*(?:regards|wishes|thanks)|"
    r"(?:thanks|thank you|many thanks)\s*(?:&|and)\s*(?:best |kind |warm )?regards|"
    r"regards|best|sincerely|yours (?:sincerely|faithfully|truly)|respectfully|cheers|"
    r"thank you(?: (?:very much|again|in advance))?|thanks(?: again| in advance)?|"
    r"(?:bien |tres |tres bien )?cordialement|(?:sinceres |meilleures )?salutations(?: "
    r"distinguees| respectueuses)?|bien a vous|respectueusement|merci(?: beaucoup| d'avance| "
    r"par avance)?|(?:un )?(?:cordial )?saludo(?:s)?(?: cordiales| atentos)?|atentamente|"
    r"cordialmente|muchas gracias|gracias|afectuosamente|quedo atent[oa]|atte|att|"
    r"atenciosamente|(?:com os )?(?:melhores )?cumprimentos|abracos|abs|obrigad[oa]|"
    r"respeitosamente|saudacoes)\W*$")
_CONTACT_LINE = re.compile(r"(?:^|\b)(?:tel|tél|phone|telephone|telefone|telefono|mobile|"
                           r"mob|cell|cel|movil|fax|whatsapp|skype|www|http|email|e-mail|"
                           r"courriel|correo)\b|^[+\d(][\d\s().+-]{5,}$|@", re.IGNORECASE)


def sign_off(text: str) -> Person | None:
    """The writer's name block under a closing ("Kind regards,\\nName\\nPosition\\n..."), or
    the last paragraph when it is such a block without a closing."""
    lines = text.split("\n")
    block_start: int | None = None
    for index in range(len(lines) - 1, -1, -1):
        if _CLOSINGS.match(fold(lines[index]).strip(" >*_")):
            block_start = index + 1
            break
    if block_start is None:
        # No closing: a final paragraph of several lines that starts with a name.
        end = len(lines)
        while end and not lines[end - 1].strip():
            end -= 1
        start = end
        while start and lines[start - 1].strip():
            start -= 1
        if end - start < 2 and not (end - start == 1 and " | " in lines[start]):
            return None
        block_start = start
    block: list[tuple[int, str]] = []
    offset = sum(len(line) + 1 for line in lines[:block_start])
    for line in lines[block_start:block_start + 10]:
        if line.strip():
            for piece in re.split(r"\s+[|/\u2022]\s+", line.strip()):
                block.append((offset, piece.strip()))
        elif block:
            break
        offset += len(line) + 1
    if not block:
        return None
    first_offset, first = block[0]
    cleaned = clean_name(first.rstrip(","))
    found = name_at(cleaned, 0)
    if found is None:
        return None
    rest = cleaned[found[1]:].strip()
    if rest and not re.match(r"[,–—|/-]", rest):
        return None   # the line is more than a name: not a sign-off
    name = found[0]
    position = organisation = ""
    country: str | None = None
    end_offset = first_offset + len(first)
    # "Paulo Souza - Delegado PF", "Mr. Sidibé Abdoulaye, Magistrate, Ministry, Mali": the
    # rest of the name's line describes the person like the lines below it.
    extra = [(first_offset, part) for part in _segments(re.sub(r"\s[–—-]\s", ", ", rest))]
    for at, line in (extra + block[1:7])[:8]:
        end_offset = at + len(line)
        if _CONTACT_LINE.search(line):
            continue
        described = describe(_segments(line))
        if described.country and not (described.position or described.organisation):
            country = country or described.country
            continue
        if not position and described.position:
            position = described.position
        if not organisation and described.organisation:
            organisation = described.organisation
        if described.country:
            country = country or described.country
        if not (described.position or described.organisation or described.country):
            # A line of neither kind: a capitalised institution without a known word.
            mentions = country_in_text(line)
            if mentions[0] and mentions[1]:
                country = country or mentions[0]
            elif not organisation and line[:1].isupper() and position:
                organisation = line.strip(" ,.")
    return Person(name, position[:200], organisation[:200], country, "", first_offset,
                  end_offset, "sign-off")


# --------------------------------------------------------------------------- the From name

def display_name(msg: EmailMessage) -> str:
    """The From header's display name, when it looks like a person's: "Wanjiru, Grace" is
    "Grace Wanjiru"; "Ministry of Justice", "Focal Point" or "info" are not names."""
    try:
        header = msg.get("From")
        addresses = getattr(header, "addresses", ())
        raw = addresses[0].display_name if addresses else ""
    except Exception:  # an undecodable header: no name from it
        return ""
    return person_name(str(raw or ""))


def person_name(raw: str) -> str:
    """A display name made a person's name, or "" when it is a role or an institution."""
    text = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", raw)[:200]
    text = re.split(r"\s+(?:via|por|par|on behalf of|en nombre de)\s+", text)[0]
    text = re.sub(r"\s*[\[(<].*$", "", text)            # "Grace Wanjiru (ODPP)"
    text = re.sub(r"\s+[-–|/]\s+.*$", "", text).strip(" \"'")
    if "," in text:
        last, _, first = text.partition(",")
        if "," not in first and name_at(clean_name(f"{first.strip()} {last.strip()}"), 0):
            text = f"{first.strip()} {last.strip()}"
    text = clean_name(text)
    if any(fold(w).strip(".") in _ROLE_NAMES for w in text.split()):
        return ""
    found = name_at(text, 0)
    if found is None or found[1] < len(text.rstrip(" .")):
        return ""
    name = found[0]
    if name.isupper():
        name = name.title()   # "GRACE WANJIRU" is written in capitals only by habit
    return name
