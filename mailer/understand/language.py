"""Which of the mailer's languages (en, fr, es) a reply is written in, from the words it uses.

A scored word list: statistical detectors (langdetect-type) are unreliable on five-line
replies made mostly of names and labels, while the labels themselves are a very good signal.
Portuguese is scored too, only to be told apart from Spanish: a reply in Portuguese (or in
any language the mailer does not answer in) gets the event's language.
"""

from __future__ import annotations

import re

from mailer.understand.folding import wordset

LANGUAGES = ("en", "fr", "es")
_SCORED = (*LANGUAGES, "pt")

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
        tambien siguientes anule cancelo tengo ese esta este estos dia lamentablemente
        buenas buenos noches tardes quedo atento atenta remito adjunto solicito datos
        comisario fiscal agradeceria pasado proximo usted ustedes nuestros nuestras"""),
    # Not answered in: told apart from Spanish, then the event's language is used.
    "pt": wordset("""nao obrigado obrigada prezados prezado prezadas prezada atenciosamente
        cumprimentos gostaria inscricao meu minha meus minhas voce voces sou seguem segue
        dados nome orgao instituicao bom boa envio do da dos das no na nos nas em ao aos
        com uma um participacao infelizmente poderei peco gentileza exmos exmas senhores
        embaixada tem honra seguintes participantes convite aceito ola tenho interesse
        abraco abracos participei dia solicitar tarde obrigado cancelamento encaminho
        abaixo funcao cargo estarei participarei indicar tambem sao ja mais pelo pela"""),
}
_WORD = re.compile(r"[a-z][a-z'-]*")


def language_of(folded: str) -> str | None:
    """en, fr or es from the words used; None when no language clearly leads, or when the
    reply is in Portuguese (the mailer does not answer in it)."""
    scores = dict.fromkeys(_SCORED, 0)
    for word in _WORD.findall(folded[:20_000]):
        for part in {word, *word.split("'")}:
            for lang in _SCORED:
                if part in _WORDS[lang]:
                    scores[lang] += 1
    if "¿" in folded or "¡" in folded:
        scores["es"] += 2
    if "ã" in folded or "õ" in folded:   # folded text has no accents: only if kept
        scores["pt"] += 2
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    if ranked[0][1] == 0 or ranked[0][1] == ranked[1][1] or ranked[0][0] == "pt":
        return None
    return ranked[0][0]

