"""Who is registering, from free text: countries named in sentences, government addresses,
self-introductions, sign-offs, the From name, one-line forms, and how they complete a reply."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailer.understand.country import countries_in_text, country_in_text, country_of_address
from mailer.understand.folding import fold
from mailer.understand.language import language_of
from mailer.understand.prose import people_in_prose, person_name, sign_off
from mailer.understand.wants import classify
from mailer.understand.who import Sender, read_participants, registrants

# --------------------------------------------------------------------------- countries


@pytest.mark.parametrize(("text", "code"), [
    ("Deputy Director at the Office of the DPP, Kenya.", "KE"),
    ("Procuradora-Geral Adjunta da República de Moçambique", "MZ"),
    ("substitut du Procureur près le Tribunal d'Abidjan (Côte d'Ivoire)", "CI"),
    ("Santo Domingo, República Dominicana", "DO"),
    ("Kinshasa, RDC", "CD"),
    ("from the Philippines' Department of Justice", "PH"),
    ("Royaume du Maroc", "MA"),
    ("Trinité-et-Tobago", "TT"),
    ("St Kitts and Nevis", "KN"),
    ("Ministério Público da Guiné-Bissau", "GW"),
    ("Республика Казахстан", "KZ"),
    ("Papua New Guinea", "PG"),
])
def test_a_country_named_in_a_sentence_in_any_language(text: str, code: str) -> None:
    """CLDR and pycountry names, official forms, abbreviations and other scripts are found."""
    assert country_in_text(text) == (code, True)


@pytest.mark.parametrize("text", [
    "la guinea del equipo",             # a lower-case word, not Guinea
    "Jordan Smith, Legal Officer",      # a first name
    "New Mexico State Police",          # a US state
    "Reunión de trabajo",               # Spanish for meeting, not Réunion
    "the Congo basin",                  # two countries: no guess
    "participants camerounais",         # an adjective: not read
])
def test_words_that_are_not_a_country_here(text: str) -> None:
    assert country_in_text(text) == (None, False)


def test_a_denied_country_is_left_out() -> None:
    """ "not Kenya", "et non du Bénin", "no de Kenia", "não de" are denials."""
    assert country_in_text("I am from Ghana, not Kenya.") == ("GH", True)
    assert country_in_text("je suis du Togo et non du Bénin") == ("TG", True)
    assert country_in_text("soy de Honduras, no de Guatemala") == ("HN", True)
    assert country_in_text("sou de Angola, não de Moçambique") == ("AO", True)
    assert [m.denied for m in countries_in_text("Ghana, not Kenya")] == [False, True]


def test_several_countries_prefer_the_writers_own_sentence() -> None:
    """Two countries named: the one in the writer's own sentence is certain, else a guess."""
    text = "Embassy of Senegal in the United States. I am from Senegal."
    assert country_in_text(text) == ("SN", False)
    assert country_in_text(text, prefer=(41, 60)) == ("SN", True)


@pytest.mark.parametrize(("address", "code"), [
    ("gwanjiru@odpp.go.ke", "KE"), ("awa@justice.gouv.sn", "SN"), ("r@pgr.gob.do", "DO"),
    ("c@mpf.mp.br", "BR"), ("t@tjsp.jus.br", "BR"), ("s@govt.lc", "LC"), ("x@gov.uk", "GB"),
    ("a@fiscalia.gov.co", "CO"), ("u@imm.gub.uy", "UY"), ("j@state.gov", "US"),
    ("k@bk.admin.ch", "CH"), ("m@mfa.gov.to", "TO"),
])
def test_a_government_address_names_its_country(address: str, code: str) -> None:
    assert country_of_address(address) == code


@pytest.mark.parametrize("address", [
    "moussa@yahoo.fr", "tevita@gmail.com", "secretaria@embangola.be", "i@police.ne",
    "x@dgsn.cm", "a@outlook.com.br", "b@go.example.com", "c@mail.gov.xx", "not an address",
])
def test_other_addresses_name_no_country(address: str) -> None:
    """Webmail, companies, embassies abroad and police forces without a government label."""
    assert country_of_address(address) is None


# --------------------------------------------------------------------------- sentences


def test_an_introduction_gives_name_position_institution_and_country() -> None:
    [p] = people_in_prose("Dear Sir/Madam,\nI am Grace Wanjiru, Deputy Director at the Office "
                          "of the Director of Public Prosecutions, Kenya. I would like to join.")
    assert (p.name, p.position, p.organisation, p.country, p.source) == (
        "Grace Wanjiru", "Deputy Director", "Office of the Director of Public Prosecutions",
        "KE", "introduction")


@pytest.mark.parametrize(("text", "name", "position", "organisation", "country"), [
    ("Yes, count me in. Abdou Karim Ndiaye, Ministry of the Interior, Senegal.",
     "Abdou Karim Ndiaye", "", "Ministry of the Interior", "SN"),
    ("Meu nome é Carlos Eduardo Silva, sou Procurador da República no Ministério Público "
     "Federal, Brasil.", "Carlos Eduardo Silva", "Procurador da República",
     "Ministério Público Federal", "BR"),
    ("Soy Andrés Felipe Gómez, asesor de la Dirección de Asuntos Internacionales de la "
     "Fiscalía General de la Nación de Colombia.", "Andrés Felipe Gómez", "asesor",
     "Dirección de Asuntos Internacionales de la Fiscalía General de la Nación", "CO"),
    ("Je m'appelle Jean-Robert Baptiste, commissaire du gouvernement.",
     "Jean-Robert Baptiste", "commissaire du gouvernement", "", None),
    ("Sou a Dra. Ana Paula Macuácua, Procuradora-Geral Adjunta da República de Moçambique.",
     "Ana Paula Macuácua", "Procuradora-Geral Adjunta", "", "MZ"),
    ("This is Atty. Maria Cristina Reyes, State Prosecutor, Department of Justice - Office of "
     "Cybercrime, Philippines.", "Maria Cristina Reyes", "State Prosecutor",
     "Department of Justice - Office of Cybercrime", "PH"),
])
def test_people_described_in_a_sentence(text: str, name: str, position: str,
                                        organisation: str, country: str | None) -> None:
    [p] = people_in_prose(text)
    assert (p.name, p.position, p.organisation, p.country) == (
        name, position, organisation, country)


@pytest.mark.parametrize("text", [
    "I am writing to register for the webinar.",     # "I am" and no name
    "I am Deputy Director at the Ministry.",          # a position, not a name
    "Santo Domingo, República Dominicana.",           # a place
    "Dear Sir, Kind regards.",                        # a greeting
    "Thank you, Madam Chair, for the invitation.",
])
def test_sentences_that_describe_nobody(text: str) -> None:
    assert people_in_prose(text) == []


def test_a_third_party_written_with_their_address() -> None:
    """ "my colleague, Mr. Tevita Taufa, Crown Counsel at ... (address)" and "la Fiscal María
    Elena Torres (address)" are people with their own address."""
    [taufa] = people_in_prose("I would like to register my colleague, Mr. Tevita Taufa, Crown "
                              "Counsel at the Office of the Attorney General of Tonga "
                              "(ttaufa@crownlaw.gov.to), for the webinar on 24 June.")
    assert (taufa.name, taufa.email, taufa.position, taufa.organisation, taufa.country) == (
        "Tevita Taufa", "ttaufa@crownlaw.gov.to", "Crown Counsel",
        "Office of the Attorney General", "TO")
    [bello] = people_in_prose("Please register: Ms. Aisha Bello (Principal State Counsel, "
                              "Federal Ministry of Justice, Nigeria) – aisha.bello@justice.gov.ng")
    assert (bello.name, bello.email) == ("Aisha Bello", "aisha.bello@justice.gov.ng")
    [torres] = people_in_prose("Confirmo la participación de la Fiscal María Elena Torres "
                               "(mtorres@fiscalia.gob.ve) en el webinario.")
    assert (torres.name, torres.email) == ("María Elena Torres", "mtorres@fiscalia.gob.ve")


# --------------------------------------------------------------------------- sign-offs


def test_a_sign_off_block_under_a_closing() -> None:
    p = sign_off("Please register me.\n\nRegards,\n\nKemar Campbell\nCrown Counsel\n"
                 "Office of the Director of Public Prosecutions\nKingston, Jamaica\n"
                 "Tel: (876) 922-6321")
    assert p is not None
    assert (p.name, p.position, p.organisation, p.country) == (
        "Kemar Campbell", "Crown Counsel", "Office of the Director of Public Prosecutions",
        "JM")


@pytest.mark.parametrize(("text", "name", "country"), [
    ("Je confirme.\n\nBien cordialement,\n\nFatou Bintou Sarr\nJuge d'instruction\n"
     "République du Sénégal", "Fatou Bintou Sarr", "SN"),
    ("Atte.\nLic. Marco Antonio Rivas Pérez / Fiscal del Ministerio Público / Guatemala",
     "Marco Antonio Rivas Pérez", "GT"),
    ("Regards,\n\nNadia Ramkissoon | Legal Officer II | Ministry of the Attorney General | "
     "Trinidad and Tobago", "Nadia Ramkissoon", "TT"),
    ("Je souhaite participer.\n\nPatrick Mukendi Kabongo\nAvocat Général\nKinshasa, RDC",
     "Patrick Mukendi Kabongo", "CD"),
    ("Thanks & regards,\nSgt. Ramesh Persaud\nGuyana Police Force", "Ramesh Persaud", "GY"),
])
def test_sign_offs_in_every_shape(text: str, name: str, country: str) -> None:
    p = sign_off(text)
    assert p is not None and (p.name, p.country) == (name, country)


@pytest.mark.parametrize("text", [
    "Regards,\nTevita",                              # a first name alone
    "Cordialement,\nLe point focal",                 # a role
    "Best regards,\nFocal Point\nMinistry of Foreign Affairs",
    "Thank you.",
])
def test_sign_offs_without_a_name(text: str) -> None:
    assert sign_off(text) is None


@pytest.mark.parametrize(("display", "name"), [
    ("Grace Wanjiru", "Grace Wanjiru"),
    ("Quispe Mamani, Luis Alberto", "Luis Alberto Quispe Mamani"),
    ("GRACE WANJIRU", "Grace Wanjiru"),
    ("Mêmounatou ADJOVI", "Mêmounatou ADJOVI"),
    ("Dr. Ana Soto (MP)", "Ana Soto"),
    ("Kemar Brown via Google Groups", "Kemar Brown"),
    ("Ministry of Foreign Affairs", ""),
    ("Focal Point Kenya", ""),
    ("info", ""),
    ("Tevita", ""),
    ("Cooperación Internacional", ""),
])
def test_the_from_name_as_a_persons_name(display: str, name: str) -> None:
    assert person_name(display) == name


# --------------------------------------------------------------------------- forms


@pytest.mark.parametrize("line", [
    "Name: Kemar Brown, Position: Detective Inspector, Organisation: JCF - Cybercrimes Unit, "
    "Country: Jamaica",
    "Name: Kemar Brown; Position: Detective Inspector; Organisation: JCF - Cybercrimes Unit; "
    "Country: Jamaica",
    "Name: Kemar Brown / Position: Detective Inspector / Organisation: JCF - Cybercrimes Unit "
    "/ Country: Jamaica",
    "Name: Kemar Brown    Position: Detective Inspector    Organisation: JCF - Cybercrimes "
    "Unit    Country: Jamaica",
    "Full name – Kemar Brown; Designation – Detective Inspector; Organisation – JCF - "
    "Cybercrimes Unit; Country – Jamaica.",
])
def test_labelled_fields_on_one_line(line: str) -> None:
    [rec] = read_participants(line)
    assert (rec.name, rec.position, rec.organisation, rec.country) == (
        "Kemar Brown", "Detective Inspector", "JCF - Cybercrimes Unit", "Jamaica")


def test_a_value_with_a_comma_is_not_cut_at_a_word_that_is_a_label() -> None:
    """Only "label:" starts a field: "Ministry of Justice, Department of ..." is one value."""
    [rec] = read_participants("Name: Ana Soto\nOrganisation: Ministry of Justice, Department "
                              "of Legal Affairs\nCountry: Chile")
    assert rec.organisation == "Ministry of Justice, Department of Legal Affairs"


def test_forms_with_a_title_a_surname_field_and_dashes() -> None:
    """ "Title: Mr" is no position; "Nombre" then "Apellido" make one name; " - " separates
    fields on one line."""
    [rec] = read_participants("Surname: KAMARA\nFirst name: Ibrahim\nTitle: Mr\nFunction: "
                              "Assistant Inspector General\nCountry: Sierra Leone")
    assert (rec.name, rec.position) == ("Ibrahim KAMARA", "Assistant Inspector General")
    [rec] = read_participants("Nombre: Carolina\nApellido: Vega Castillo\nPaís: Panamá")
    assert rec.name == "Carolina Vega Castillo"
    [rec] = read_participants("Nombre y apellido: Julio César Rodríguez - Cargo: Procurador "
                              "Fiscal - País: República Dominicana")
    assert (rec.name, rec.position, rec.country) == (
        "Julio César Rodríguez", "Procurador Fiscal", "República Dominicana")


def test_portuguese_labels() -> None:
    [rec] = read_participants("Nome completo: Ricardo Alves\nCargo: Perito\nÓrgão: Polícia "
                              "Federal\nPaís: Brasil\nE-mail: r@pf.gov.br")
    assert (rec.name, rec.position, rec.organisation, rec.country, rec.email) == (
        "Ricardo Alves", "Perito", "Polícia Federal", "Brasil", "r@pf.gov.br")


def test_a_list_line_with_dashes_and_titles() -> None:
    [rec] = read_participants("1. Ms. Jane Mwangi – Senior State Counsel, Office of the "
                              "Attorney General – jane.mwangi@ag.go.ke")
    assert (rec.name, rec.email) == ("Jane Mwangi", "jane.mwangi@ag.go.ke")


@pytest.mark.parametrize("dash", ["–", "—", "-"])
def test_list_lines_cut_only_by_dashes_are_each_a_participant(dash: str) -> None:
    """Outlook's and phones' habit: "Name – Position – Institution – address", no comma.
    Each line is a person; the second used to be dropped without a word to anyone."""
    text = (f"Solicito a inscrição dos seguintes participantes:\n\n"
            f"Ana Paula Silva {dash} Delegada de Polícia Federal {dash} Polícia Federal "
            f"{dash} ana.silva@pf.gov.br\n"
            f"Carlos Eduardo Lima {dash} Perito Criminal Federal {dash} Polícia Federal "
            f"{dash} carlos.lima@pf.gov.br\n\nAtenciosamente,\nAna Paula Silva")
    records = read_participants(text)
    assert [(r.name, r.position, r.organisation, r.email) for r in records] == [
        ("Ana Paula Silva", "Delegada de Polícia Federal", "Polícia Federal",
         "ana.silva@pf.gov.br"),
        ("Carlos Eduardo Lima", "Perito Criminal Federal", "Polícia Federal",
         "carlos.lima@pf.gov.br")]
    kind, people, _, _ = classify(text, fold(text), Sender("ana.silva@pf.gov.br",
                                                           "Ana Paula Silva"))
    assert kind.value == "registration"
    assert [p.email for p in people] == ["ana.silva@pf.gov.br", "carlos.lima@pf.gov.br"]


def test_a_sentence_with_dashes_is_not_a_participant() -> None:
    assert read_participants("Kingston - Jamaica - see you on the 9th") == []
    assert read_participants("The webinar – as announced – starts at 10:00.") == []


# --------------------------------------------------------------------------- together


def test_the_sender_is_completed_from_prose_then_guessed() -> None:
    """Sentence, then sign-off, then the From name (a guess), then the address (a guess)."""
    sender = Sender("kwame.asante@mint.gov.gh", "Kwame Asante")
    [guessed] = registrants("Kindly register me. Thanks", [], sender)
    assert (guessed.name, guessed.country, guessed.inferred) == (
        "Kwame Asante", "GH", ("name", "country"))
    [written] = registrants("I am Kofi Mensah, State Attorney, Ghana.", [], sender)
    assert (written.name, written.position, written.country, written.inferred) == (
        "Kofi Mensah", "State Attorney", "GH", ())


def test_people_named_with_a_title_are_others_and_the_sender_only_when_they_say_me() -> None:
    """ "my colleague, Mr. X, ... (address)" registers X, not the sender; "register me and my
    colleague Ms. Y (address)" registers both."""
    sender = Sender("info@crownlaw.gov.to", "")
    text = ("I would like to register my colleague, Mr. Tevita Taufa, Crown Counsel at the "
            "Office of the Attorney General of Tonga (ttaufa@crownlaw.gov.to).")
    assert [(p.name, p.email) for p in registrants(text, [], sender)] == [
        ("Tevita Taufa", "ttaufa@crownlaw.gov.to")]
    both = registrants("Please register me and my colleague Ms. Ama Boateng "
                       "(ama.boateng@mint.gov.gh).\n\nBest,\nAkosua Mensah", [],
                       Sender("amensah@mint.gov.gh", "Akosua Mensah"))
    assert [(p.name, p.email) for p in both] == [("Akosua Mensah", "amensah@mint.gov.gh"),
                                                 ("Ama Boateng", "ama.boateng@mint.gov.gh")]


def test_a_delegation_without_a_country_takes_the_text_then_the_addresses() -> None:
    records = read_participants("Name: A B\nEmail: ab@justice.gouv.sn\n\nName: C D\n"
                               "Email: cd@gmail.com")
    sender = Sender("focal@diplomatie.gouv.sn")
    people = registrants("", records, sender)
    assert [(p.country, p.inferred) for p in people] == [("SN", ("country",)),
                                                         ("SN", ("country",))]
    written = registrants("Senegal nominates:", records, sender)
    assert [(p.country, p.inferred) for p in written] == [("SN", ()), ("SN", ())]


@pytest.mark.parametrize(("text", "country"), [
    ("Please note that I am from Ghana, not Kenya.", "GH"),
    ("Bonjour, petite correction : je suis du Togo et non du Bénin. Merci.", "TG"),
    ("Soy de Honduras, no de Guatemala.", "HN"),
])
def test_saying_where_one_is_from_is_a_registration(text: str, country: str) -> None:
    """A correction of a guess is a registration of the sender, to update the stored one."""
    kind, [p], _, _ = classify(text, fold(text), Sender("x@gmail.com"))
    assert (kind.value, p.email, p.country) == ("registration", "x@gmail.com", country)


def test_portuguese_is_answered_in_the_events_language() -> None:
    """Portuguese is told apart from Spanish: no answering language of its own."""
    assert language_of(fold("Bom dia, gostaria de me inscrever no webinário. Obrigado")) is None
    assert language_of(fold("Buenos días, quisiera inscribirme en el webinario. Gracias")) == "es"


def test_country_names_of_languages_only_read_keep_no_babel_locale_loaded() -> None:
    """The country index reads CLDR's names in nine languages; Babel would keep the six not
    written in (pt, de, it, nl, ru, ar) whole in every process, 6.3 MB of heap in the daemon
    and its worker alike. A fresh interpreter, as the daemon starts."""
    probe = ("from babel import localedata\n"
             "from mailer.understand.country import countries_in_text\n"
             "assert [m.code for m in countries_in_text('Ich komme aus Kenia.')] == ['KE']\n"
             "print(' '.join(sorted(set(localedata._cache) | set(localedata._dict_cache))))\n")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.split()
    assert not {"pt", "de", "it", "nl", "ru", "ar"} & set(loaded), loaded
