"""Generates the shipped information-pack files in packs/: factsheet, bibliography and slides.

Run from the repository root (``.venv/bin/python scripts/make_packs.py``). The output is
deterministic (fixed dates, fixed zip timestamps), so regenerating does not churn git.
The PDFs use DejaVu Sans from Debian's fonts-dejavu-core so French and Spanish accents
render; fpdf2 bundles no Unicode TTF, so without DejaVu it falls back to the core
Helvetica font (cp1252, which still covers French and Spanish).
"""

from __future__ import annotations

import io
import sys
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF
from pptx import Presentation
from pptx.util import Pt

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "packs"
FONTS = Path("/usr/share/fonts/truetype/dejavu")
# One fixed date for every file: the packs describe the 2020 series.
FIXED = datetime(2020, 6, 1, 9, 0, 0, tzinfo=timezone.utc)
ZIP_TIME = (2020, 6, 1, 9, 0, 0)
AUTHOR = "Council of Europe - Cybercrime Programme Office (C-PROC)"


@dataclass(frozen=True)
class Text:
    """Everything written in one language."""

    series: str
    organisers: str
    factsheet_title: str
    factsheet: list[tuple[str, str]]
    bibliography_title: str
    bibliography_intro: str
    references: list[str]
    agenda_title: str
    agenda: list[str]
    segments: list[tuple[str, list[str]]]
    minutes: str
    discussion: str


EN = Text(
    series="Cybercrime and criminal justice in cyberspace",
    organisers="European Union and Council of Europe",
    factsheet_title="Factsheet: the Budapest Convention and cybercrime legislation",
    factsheet=[
        ("The Convention",
         "The Convention on Cybercrime of the Council of Europe (ETS No. 185), known as the "
         "Budapest Convention, was opened for signature in Budapest on 23 November 2001 and "
         "entered into force on 1 July 2004. It is the first international treaty on crimes "
         "committed through computer systems and on electronic evidence. Any State may accede "
         "to it on invitation (Article 37); many Parties are not members of the Council of "
         "Europe."),
        ("Substantive criminal law (Articles 2-13)",
         "Parties make criminal offences of illegal access, illegal interception, data "
         "interference, system interference and misuse of devices; computer-related forgery "
         "and fraud; offences related to child sexual abuse material; and infringements of "
         "copyright and related rights. Attempt, aiding and abetting, corporate liability and "
         "sanctions are also covered."),
        ("Procedural powers (Articles 14-21)",
         "Expedited preservation of stored data and of traffic data, production orders, search "
         "and seizure of stored computer data, real-time collection of traffic data and "
         "interception of content data. These powers apply to any crime involving electronic "
         "evidence, subject to the conditions and safeguards of Article 15 (human rights, "
         "proportionality, judicial or other independent supervision)."),
        ("International co-operation (Articles 23-35)",
         "Extradition, mutual legal assistance, spontaneous information, expedited "
         "preservation requests between Parties, and a 24/7 network of contact points "
         "available around the clock (Article 35)."),
        ("Protocols",
         "The First Additional Protocol (ETS No. 189, 2003) covers acts of a racist and "
         "xenophobic nature committed through computer systems. The Second Additional "
         "Protocol (CETS No. 224, opened for signature on 12 May 2022) provides for enhanced "
         "co-operation and the disclosure of electronic evidence, including direct "
         "co-operation with service providers and emergency mutual assistance."),
        ("Follow-up and capacity building",
         "The Cybercrime Convention Committee (T-CY) represents the Parties, assesses "
         "implementation and adopts Guidance Notes. The Cybercrime Programme Office of the "
         "Council of Europe (C-PROC) in Bucharest supports countries worldwide in reforming "
         "legislation and training criminal justice authorities, notably through joint "
         "projects with the European Union such as GLACY+."),
        ("Why domestic legislation matters",
         "Electronic evidence is volatile and often stored abroad. Clear offences, procedural "
         "powers with safeguards and a legal basis for international co-operation allow "
         "prosecutors and judges to act quickly and to obtain evidence that courts admit."),
    ],
    bibliography_title="Bibliography: cybercrime and electronic evidence",
    bibliography_intro="Public references, all available online free of charge.",
    references=[
        "Council of Europe. Convention on Cybercrime. European Treaty Series No. 185. "
        "Budapest, 23 November 2001.",
        "Council of Europe. Explanatory Report to the Convention on Cybercrime. European "
        "Treaty Series No. 185. 2001.",
        "Council of Europe. Additional Protocol to the Convention on Cybercrime, concerning the "
        "criminalisation of acts of a racist and xenophobic nature committed through computer "
        "systems. European Treaty Series No. 189. Strasbourg, 28 January 2003.",
        "Council of Europe. Second Additional Protocol to the Convention on Cybercrime on "
        "enhanced co-operation and disclosure of electronic evidence. Council of Europe "
        "Treaty Series No. 224. Strasbourg, 12 May 2022.",
        "Cybercrime Convention Committee (T-CY). The Budapest Convention on Cybercrime: "
        "benefits and impact in practice. T-CY(2020)16. Strasbourg, July 2020.",
        "Cybercrime Convention Committee (T-CY). Guidance Notes. Strasbourg: Council of "
        "Europe.",
        "United Nations Office on Drugs and Crime (UNODC). Comprehensive Study on Cybercrime. "
        "Draft, February 2013. Vienna: United Nations.",
        "International Telecommunication Union (ITU). Understanding Cybercrime: Phenomena, "
        "Challenges and Legal Response. Geneva, 2012.",
        "Council of Europe. Convention on the Protection of Children against Sexual "
        "Exploitation and Sexual Abuse (Lanzarote Convention). Council of Europe Treaty "
        "Series No. 201. Lanzarote, 25 October 2007.",
        "Council of Europe. Convention for the Protection of Individuals with regard to "
        "Automatic Processing of Personal Data. European Treaty Series No. 108. Strasbourg, "
        "28 January 1981; modernised by the Protocol CETS No. 223 (2018).",
    ],
    agenda_title="Agenda (about 100 minutes)",
    agenda=["Opening", "Six segments: a 10-minute presentation each",
            "Discussion: questions from participants", "Closing"],
    segments=[
        ("Cybercrime and electronic evidence: the challenge",
         ["Every crime may involve electronic evidence", "Data is volatile and often abroad"]),
        ("Substantive criminal law",
         ["Articles 2-13: offences against and by means of computers",
          "Attempt, aiding, corporate liability, sanctions"]),
        ("Procedural powers and safeguards",
         ["Articles 14-21: preservation, production orders, search and seizure",
          "Article 15: conditions and safeguards"]),
        ("International co-operation",
         ["Articles 23-35: extradition and mutual legal assistance",
          "The 24/7 network of contact points"]),
        ("The Protocols",
         ["First Additional Protocol (ETS No. 189)",
          "Second Additional Protocol (CETS No. 224): enhanced co-operation"]),
        ("Capacity building",
         ["T-CY and its Guidance Notes", "C-PROC and joint EU / Council of Europe projects"]),
    ],
    minutes="10 minutes",
    discussion="Discussion - this webinar is recorded",
)

FR = Text(
    series="Cybercrime et justice pénale dans le cyberespace",
    organisers="Union européenne et Conseil de l'Europe",
    factsheet_title="Fiche d'information : la Convention de Budapest et la législation sur "
                    "la cybercriminalité",
    factsheet=[
        ("La Convention",
         "La Convention sur la cybercriminalité du Conseil de l'Europe (STE n° 185), dite "
         "Convention de Budapest, a été ouverte à la signature à Budapest le 23 novembre 2001 "
         "et est entrée en vigueur le 1er juillet 2004. C'est le premier traité international "
         "sur les infractions commises au moyen de systèmes informatiques et sur la preuve "
         "électronique. Tout État peut y adhérer sur invitation (article 37) ; de nombreuses "
         "Parties ne sont pas membres du Conseil de l'Europe."),
        ("Droit pénal matériel (articles 2 à 13)",
         "Les Parties érigent en infractions pénales l'accès illégal, l'interception illégale, "
         "l'atteinte à l'intégrité des données et du système et l'abus de dispositifs ; la "
         "falsification et la fraude informatiques ; les infractions se rapportant aux abus "
         "sexuels sur enfants ; les atteintes à la propriété intellectuelle. La tentative, la "
         "complicité, la responsabilité des personnes morales et les sanctions sont aussi "
         "traitées."),
        ("Pouvoirs procéduraux (articles 14 à 21)",
         "Conservation rapide des données stockées et des données relatives au trafic, "
         "injonction de produire, perquisition et saisie de données informatiques stockées, "
         "collecte en temps réel des données relatives au trafic et interception de données "
         "relatives au contenu. Ces pouvoirs s'appliquent à toute infraction impliquant une "
         "preuve électronique, sous réserve des conditions et sauvegardes de l'article 15."),
        ("Coopération internationale (articles 23 à 35)",
         "Extradition, entraide judiciaire, information spontanée, demandes de conservation "
         "rapide entre Parties et réseau de points de contact disponibles 24 heures sur 24, "
         "7 jours sur 7 (article 35)."),
        ("Protocoles",
         "Le premier Protocole additionnel (STE n° 189, 2003) concerne les actes de nature "
         "raciste et xénophobe commis par le biais de systèmes informatiques. Le deuxième "
         "Protocole additionnel (STCE n° 224, ouvert à la signature le 12 mai 2022) renforce "
         "la coopération et la divulgation de preuves électroniques, y compris la coopération "
         "directe avec les fournisseurs de services et l'entraide d'urgence."),
        ("Suivi et renforcement des capacités",
         "Le Comité de la Convention sur la cybercriminalité (T-CY) représente les Parties, "
         "évalue la mise en œuvre et adopte des notes d'orientation. Le Bureau du programme "
         "sur la cybercriminalité du Conseil de l'Europe (C-PROC), à Bucarest, aide les pays "
         "du monde entier à réformer leur législation et à former les autorités de justice "
         "pénale, notamment par des projets conjoints avec l'Union européenne comme GLACY+."),
        ("Pourquoi la législation nationale compte",
         "La preuve électronique est volatile et souvent stockée à l'étranger. Des infractions "
         "claires, des pouvoirs procéduraux assortis de garanties et une base juridique pour "
         "la coopération internationale permettent aux procureurs et aux juges d'agir vite et "
         "d'obtenir des preuves recevables."),
    ],
    bibliography_title="Bibliographie : cybercriminalité et preuve électronique",
    bibliography_intro="Références publiques, toutes disponibles gratuitement en ligne.",
    references=[
        "Conseil de l'Europe. Convention sur la cybercriminalité. Série des traités "
        "européens n° 185. Budapest, 23 novembre 2001.",
        "Conseil de l'Europe. Rapport explicatif de la Convention sur la cybercriminalité. "
        "STE n° 185. 2001.",
        "Conseil de l'Europe. Protocole additionnel à la Convention sur la cybercriminalité, "
        "relatif à l'incrimination d'actes de nature raciste et xénophobe commis par le biais "
        "de systèmes informatiques. STE n° 189. Strasbourg, 28 janvier 2003.",
        "Conseil de l'Europe. Deuxième Protocole additionnel à la Convention sur la "
        "cybercriminalité relatif au renforcement de la coopération et de la divulgation de "
        "preuves électroniques. STCE n° 224. Strasbourg, 12 mai 2022.",
        "Comité de la Convention sur la cybercriminalité (T-CY). The Budapest Convention on "
        "Cybercrime: benefits and impact in practice. T-CY(2020)16. Strasbourg, juillet 2020 "
        "(en anglais).",
        "Comité de la Convention sur la cybercriminalité (T-CY). Notes d'orientation. "
        "Strasbourg : Conseil de l'Europe.",
        "Office des Nations Unies contre la drogue et le crime (ONUDC). Étude approfondie sur "
        "la cybercriminalité. Projet, février 2013. Vienne : Nations Unies.",
        "Union internationale des télécommunications (UIT). Comprendre la cybercriminalité : "
        "phénomènes, difficultés et réponses juridiques. Genève, 2012.",
        "Conseil de l'Europe. Convention sur la protection des enfants contre l'exploitation "
        "et les abus sexuels (Convention de Lanzarote). STCE n° 201. Lanzarote, "
        "25 octobre 2007.",
        "Conseil de l'Europe. Convention pour la protection des personnes à l'égard du "
        "traitement automatisé des données à caractère personnel. STE n° 108. Strasbourg, "
        "28 janvier 1981 ; modernisée par le Protocole STCE n° 223 (2018).",
    ],
    agenda_title="Ordre du jour (environ 100 minutes)",
    agenda=["Ouverture", "Six segments : une présentation de 10 minutes chacun",
            "Discussion : questions des participants", "Clôture"],
    segments=[
        ("Cybercriminalité et preuve électronique : l'enjeu",
         ["Toute infraction peut impliquer une preuve électronique",
          "Des données volatiles, souvent à l'étranger"]),
        ("Droit pénal matériel",
         ["Articles 2 à 13 : infractions contre et au moyen des systèmes informatiques",
          "Tentative, complicité, personnes morales, sanctions"]),
        ("Pouvoirs procéduraux et garanties",
         ["Articles 14 à 21 : conservation, injonction de produire, perquisition et saisie",
          "Article 15 : conditions et sauvegardes"]),
        ("Coopération internationale",
         ["Articles 23 à 35 : extradition et entraide judiciaire",
          "Le réseau 24/7 de points de contact"]),
        ("Les Protocoles",
         ["Premier Protocole additionnel (STE n° 189)",
          "Deuxième Protocole additionnel (STCE n° 224) : coopération renforcée"]),
        ("Renforcement des capacités",
         ["Le T-CY et ses notes d'orientation",
          "Le C-PROC et les projets conjoints UE / Conseil de l'Europe"]),
    ],
    minutes="10 minutes",
    discussion="Discussion - ce webinaire est enregistré",
)

ES = Text(
    series="Ciberdelincuencia y justicia penal en el ciberespacio",
    organisers="Unión Europea y Consejo de Europa",
    factsheet_title="Ficha informativa: el Convenio de Budapest y la legislación sobre "
                    "ciberdelincuencia",
    factsheet=[
        ("El Convenio",
         "El Convenio sobre la Ciberdelincuencia del Consejo de Europa (STE n.º 185), conocido "
         "como Convenio de Budapest, se abrió a la firma en Budapest el 23 de noviembre de 2001 "
         "y entró en vigor el 1 de julio de 2004. Es el primer tratado internacional sobre los "
         "delitos cometidos por medio de sistemas informáticos y sobre la prueba electrónica. "
         "Cualquier Estado puede adherirse previa invitación (artículo 37); muchas Partes no "
         "son miembros del Consejo de Europa."),
        ("Derecho penal sustantivo (artículos 2 a 13)",
         "Las Partes tipifican como delito el acceso ilícito, la interceptación ilícita, la "
         "interferencia en los datos y en el sistema y el abuso de los dispositivos; la "
         "falsificación y el fraude informáticos; los delitos relacionados con el abuso sexual "
         "infantil; y las infracciones de la propiedad intelectual. También se tratan la "
         "tentativa, la complicidad, la responsabilidad de las personas jurídicas y las "
         "sanciones."),
        ("Facultades procesales (artículos 14 a 21)",
         "Conservación rápida de datos almacenados y de datos sobre el tráfico, órdenes de "
         "presentación, registro y confiscación de datos almacenados, obtención en tiempo real "
         "de datos sobre el tráfico e interceptación de datos sobre el contenido. Se aplican a "
         "todo delito que implique pruebas electrónicas, con las condiciones y salvaguardias "
         "del artículo 15."),
        ("Cooperación internacional (artículos 23 a 35)",
         "Extradición, asistencia mutua, información espontánea, solicitudes de conservación "
         "rápida entre Partes y una red de puntos de contacto disponibles las 24 horas, los "
         "7 días de la semana (artículo 35)."),
        ("Protocolos",
         "El primer Protocolo adicional (STE n.º 189, 2003) trata los actos de índole racista "
         "y xenófoba cometidos por medio de sistemas informáticos. El segundo Protocolo "
         "adicional (STCE n.º 224, abierto a la firma el 12 de mayo de 2022) refuerza la "
         "cooperación y la revelación de pruebas electrónicas, incluida la cooperación directa "
         "con los proveedores de servicios y la asistencia mutua de emergencia."),
        ("Seguimiento y fortalecimiento de capacidades",
         "El Comité del Convenio sobre la Ciberdelincuencia (T-CY) representa a las Partes, "
         "evalúa la aplicación y adopta notas de orientación. La Oficina del Programa sobre "
         "Ciberdelincuencia del Consejo de Europa (C-PROC), en Bucarest, apoya a países de "
         "todo el mundo en la reforma legislativa y la formación de las autoridades de justicia "
         "penal, en particular mediante proyectos conjuntos con la Unión Europea como GLACY+."),
        ("Por qué importa la legislación nacional",
         "La prueba electrónica es volátil y a menudo se encuentra en el extranjero. Delitos "
         "claros, facultades procesales con salvaguardias y una base jurídica para la "
         "cooperación internacional permiten a fiscales y jueces actuar con rapidez y obtener "
         "pruebas admisibles."),
    ],
    bibliography_title="Bibliografía: ciberdelincuencia y prueba electrónica",
    bibliography_intro="Referencias públicas, todas disponibles gratuitamente en línea.",
    references=[
        "Consejo de Europa. Convenio sobre la Ciberdelincuencia. Serie de Tratados Europeos "
        "n.º 185. Budapest, 23 de noviembre de 2001.",
        "Consejo de Europa. Informe explicativo del Convenio sobre la Ciberdelincuencia. "
        "STE n.º 185. 2001.",
        "Consejo de Europa. Protocolo adicional al Convenio sobre la Ciberdelincuencia "
        "relativo a la penalización de actos de índole racista y xenófoba cometidos por medio "
        "de sistemas informáticos. STE n.º 189. Estrasburgo, 28 de enero de 2003.",
        "Consejo de Europa. Segundo Protocolo adicional al Convenio sobre la Ciberdelincuencia "
        "relativo a la cooperación reforzada y la revelación de pruebas electrónicas. "
        "STCE n.º 224. Estrasburgo, 12 de mayo de 2022.",
        "Comité del Convenio sobre la Ciberdelincuencia (T-CY). The Budapest Convention on "
        "Cybercrime: benefits and impact in practice. T-CY(2020)16. Estrasburgo, julio de "
        "2020 (en inglés).",
        "Comité del Convenio sobre la Ciberdelincuencia (T-CY). Notas de orientación. "
        "Estrasburgo: Consejo de Europa.",
        "Oficina de las Naciones Unidas contra la Droga y el Delito (UNODC). Estudio "
        "exhaustivo sobre el delito cibernético. Borrador, febrero de 2013. Viena: Naciones "
        "Unidas.",
        "Unión Internacional de Telecomunicaciones (UIT). Comprensión del ciberdelito: "
        "fenómenos, dificultades y respuesta jurídica. Ginebra, 2012.",
        "Consejo de Europa. Convenio para la protección de los niños contra la explotación y "
        "el abuso sexual (Convenio de Lanzarote). STCE n.º 201. Lanzarote, 25 de octubre de "
        "2007.",
        "Consejo de Europa. Convenio para la protección de las personas con respecto al "
        "tratamiento automatizado de datos de carácter personal. STE n.º 108. Estrasburgo, "
        "28 de enero de 1981; modernizado por el Protocolo STCE n.º 223 (2018).",
    ],
    agenda_title="Orden del día (unos 100 minutos)",
    agenda=["Apertura", "Seis segmentos: una presentación de 10 minutos cada uno",
            "Debate: preguntas de los participantes", "Clausura"],
    segments=[
        ("Ciberdelincuencia y prueba electrónica: el desafío",
         ["Todo delito puede implicar pruebas electrónicas",
          "Datos volátiles, a menudo en el extranjero"]),
        ("Derecho penal sustantivo",
         ["Artículos 2 a 13: delitos contra y por medio de sistemas informáticos",
          "Tentativa, complicidad, personas jurídicas, sanciones"]),
        ("Facultades procesales y salvaguardias",
         ["Artículos 14 a 21: conservación, órdenes de presentación, registro y confiscación",
          "Artículo 15: condiciones y salvaguardias"]),
        ("Cooperación internacional",
         ["Artículos 23 a 35: extradición y asistencia mutua",
          "La red 24/7 de puntos de contacto"]),
        ("Los Protocolos",
         ["Primer Protocolo adicional (STE n.º 189)",
          "Segundo Protocolo adicional (STCE n.º 224): cooperación reforzada"]),
        ("Fortalecimiento de capacidades",
         ["El T-CY y sus notas de orientación",
          "La C-PROC y los proyectos conjuntos UE / Consejo de Europa"]),
    ],
    minutes="10 minutos",
    discussion="Debate - este webinario se graba",
)

TEXTS: dict[str, Text] = {"en": EN, "fr": FR, "es": ES}


def _pdf(title: str, lang: str) -> tuple[FPDF, str]:
    """A new A4 document with fixed metadata and the best Unicode font available."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED)
    pdf.set_title(title)
    pdf.set_author(AUTHOR)
    pdf.set_lang(lang)
    pdf.set_margins(20, 20, 20)
    if (FONTS / "DejaVuSans.ttf").exists():
        pdf.add_font("DejaVu", "", str(FONTS / "DejaVuSans.ttf"))
        pdf.add_font("DejaVu", "B", str(FONTS / "DejaVuSans-Bold.ttf"))
        family = "DejaVu"
    else:
        print("DejaVu fonts not found: using core Helvetica (cp1252)", file=sys.stderr)
        family = "helvetica"
    pdf.add_page()
    return pdf, family


def _header(pdf: FPDF, family: str, text: Text, title: str) -> None:
    pdf.set_font(family, "", 9)
    pdf.multi_cell(0, 5, f"{text.series} - {text.organisers}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font(family, "B", 15)
    pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def factsheet(text: Text, lang: str) -> bytes:
    """The factsheet PDF: the Budapest Convention in one or two pages."""
    pdf, family = _pdf(text.factsheet_title, lang)
    _header(pdf, family, text, text.factsheet_title)
    for heading, body in text.factsheet:
        pdf.set_font(family, "B", 11)
        pdf.multi_cell(0, 6, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, "", 10)
        pdf.multi_cell(0, 5, body, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    return bytes(pdf.output())


def bibliography(text: Text, lang: str) -> bytes:
    """The bibliography PDF: numbered public references."""
    pdf, family = _pdf(text.bibliography_title, lang)
    _header(pdf, family, text, text.bibliography_title)
    pdf.set_font(family, "", 10)
    pdf.multi_cell(0, 5, text.bibliography_intro, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for number, reference in enumerate(text.references, start=1):
        pdf.multi_cell(0, 5, f"{number}. {reference}", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    return bytes(pdf.output())


def slides(text: Text) -> bytes:
    """The slides: title, agenda, one slide per 10-minute segment, discussion."""
    deck = Presentation()
    title_layout, bullets_layout = deck.slide_layouts[0], deck.slide_layouts[1]
    first = deck.slides.add_slide(title_layout)
    first.shapes.title.text = text.series
    first.placeholders[1].text = text.organisers
    _bullets(deck.slides.add_slide(bullets_layout), text.agenda_title, text.agenda)
    for number, (heading, points) in enumerate(text.segments, start=1):
        _bullets(deck.slides.add_slide(bullets_layout),
                 f"{number}. {heading} ({text.minutes})", points)
    last = deck.slides.add_slide(deck.slide_layouts[5])
    last.shapes.title.text = text.discussion
    props = deck.core_properties
    props.title, props.author, props.last_modified_by = text.series, AUTHOR, AUTHOR
    props.created = props.modified = FIXED.replace(tzinfo=None)
    props.revision = 1
    buffer = io.BytesIO()
    deck.save(buffer)
    return _fixed_zip(buffer.getvalue())


def _bullets(slide, title: str, points: list[str]) -> None:  # noqa: ANN001 (pptx has no types)
    slide.shapes.title.text = title
    # The layout's 44 pt title would overflow with the longer French and Spanish headings.
    slide.shapes.title.text_frame.paragraphs[0].runs[0].font.size = Pt(32)
    body = slide.placeholders[1].text_frame
    body.text = points[0]
    for point in points[1:]:
        body.add_paragraph().text = point
    for paragraph in body.paragraphs:
        for run in paragraph.runs:
            run.font.size = Pt(24)


def _fixed_zip(data: bytes) -> bytes:
    """Rewrite a zip with fixed timestamps: python-pptx stamps each part with the clock."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(fixed, source.read(info.filename))
    return out.getvalue()


def main() -> None:
    """Write every pack file for every language into packs/."""
    OUT.mkdir(exist_ok=True)
    for lang, text in TEXTS.items():
        files = {f"factsheet.{lang}.pdf": factsheet(text, lang),
                 f"bibliography.{lang}.pdf": bibliography(text, lang),
                 f"slides.{lang}.pptx": slides(text)}
        for name, data in files.items():
            (OUT / name).write_bytes(data)
            print(f"packs/{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
