"""Which of the mailer's languages (en, fr, es) a reply is written in, from the words it uses.

A scored word list: statistical detectors (langdetect-type) are unreliable on five-line
replies made mostly of names and labels, while the labels themselves are a very good signal.
"""

from __future__ import annotations

import re

from mailer.understand.folding import wordset

LANGUAGES = ("en", "fr", "es")

# Words frequent in one language and rare in the other two (after accent folding); form labels
# are included because replies are often nothing but a filled form.
_WORDS: dict[str, frozenset[str]] = {
    "en": wordset("""the and to of is are i my we our please would like will thank thanks
        you your name names full first last surname country position organization email
        register registration attend attending with for regards dear hello hi best can could
        webinar this that not be have need cancel certificate kind sincerely ministry title
        function yes recorded link when what how where which who there
        session participate join here below following"""),
    "fr": wordset("""le les des du et je nous vous mon ma mes notre nos est sont pour avec
        merci bonjour cordialement madame monsieur nom noms prenom prenoms pays fonction poste
        courriel adresse electronique inscription inscrire participer pas ne une un au aux sur
        dans qui ce cette souhaite souhaiterais voudrais webinaire pourriez quel quelle bien
        veuillez annuler ministere organisme certificat lien sera salutations suis etre serai
        pourrai aussi ci-dessous suivants oui avez"""),
    "es": wordset("""el los las y yo mi mis nosotros nuestro nuestra es son para con gracias
        hola saludos atentamente estimado estimados estimada senor senora nombre nombres
        apellido apellidos pais cargo puesto correo inscripcion inscribirme participar una
        uno por favor del al muy quisiera podrian habra webinario seminario cordiales
        ministerio organizacion institucion certificado enlace sera estoy podre asistir
        tambien siguientes anule cancelo"""),
}
_WORD = re.compile(r"[a-z][a-z'-]*")


def language_of(folded: str) -> str | None:
    """en, fr or es from the words used; None when no language clearly leads."""
    scores = dict.fromkeys(LANGUAGES, 0)
    for word in _WORD.findall(folded[:20_000]):
        for part in {word, *word.split("'")}:
            for lang in LANGUAGES:
                if part in _WORDS[lang]:
                    scores[lang] += 1
    if "¿" in folded or "¡" in folded:
        scores["es"] += 2
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    if ranked[0][1] == 0 or ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]

