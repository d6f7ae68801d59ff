"""The names set's text: sentences that each hold one name, place or rare word (the boosted words).

The lists below were written for this recipe (no evaluation text was used): first names and surnames
from many languages, towns and cities, and rare common nouns. Most are not in the acoustic model's
training text in this spelling, many are spelled unlike they sound (Siobhan, Niamh, Nguyen), and none
is an everyday English word, so a boosted word that shows up in a hypothesis was (almost) never
there by chance. :func:`make_sentences` pairs first names with surnames and fills everyday templates
("please call {} tomorrow morning") deterministically from a seed; each entity is used once.
"""

from __future__ import annotations

import random
from typing import Dict, List

__all__ = ["FIRST_NAMES", "SURNAMES", "PLACES", "RARE_WORDS", "make_sentences"]

FIRST_NAMES = """Siobhan Anika Bartholomew Cormac Dmitri Esmeralda Fatima Giovanni Hamish Ingrid Jasper Keiko
Leopold Magnus Niamh Priya Quentin Rosalind Sven Tobias Ulrike Valentina Wilhelmina Xavier Yusuf Zoltan
Anneliese Benedikt Cressida Desmond Florian Gwendolyn Horatio Isolde Kasimir Lucinda Marisol Nadia Octavia
Percival Rafferty Saoirse Thaddeus Ursula Vikram Winifred Yolanda Zachariah Agnieszka Bronwyn Casimir Dagmar
Evander Fenella Gideon Henrike Ignatius Jolanta Kwame Ludmila Mortimer Nikolai Ottilie Pieter Radomir Solveig
Tamsin Wenceslas Ximena Yevgeny Zenobia Aurelio Beatrix Cosimo Delphine Emeric Fiorella Gustav Hyacinth
Imogen Jovan Katarina Lorcan Maximilian Neville Orlaith Philippa Reinhold Seraphina Torvald Leocadia""".split()

SURNAMES = """Kowalski Okonkwo Nakamura Lindqvist Fitzgerald Abernathy Castellano Delacroix Hakimi Ivanova
Jablonski Kaminski Lombardi Moreau Novak Oyelaran Petrakis Quintero Rasmussen Santoro Takahashi Valdez
Wojcik Yamamoto Zielinski Brennan Gallagher Haddad Mahoney Nguyen Okafor Pellegrini Radcliffe Sorensen
Thorne Whitaker Kovacs Ferreira Bergstrom Calloway Donnelly Esposito Farouk Gutierrez Halvorsen Iwasaki
Jankowski Kuznetsov Lachance Mancini Nakashima Olafsson Papadopoulos Rinaldi Schumacher Tanaka Vasquez
Weatherby Yilmaz Zamora Achterberg Blomqvist Chakraborty Dimitriou Eriksen Falconer Grabowski Hoffmann
Ishikawa Jorgensen Kapoor Lundgren Marchetti Nieminen Ostrowski Pietrowski Rautenberg Szymanski Tremblay
Uchida Vandenberg Wieczorek Yoshida Zdanowicz Agbaje Bianchi Cavanagh Drummond Eisenberg Fontaine Gianelli
Horvath Kirkpatrick Lewandowski Montgomery Nowicki Oberlin""".split()

PLACES = """Reykjavik Ouagadougou Tallinn Bratislava Ljubljana Kalamazoo Timbuktu Saskatoon Wollongong
Valparaiso Tegucigalpa Antananarivo Chattanooga Albuquerque Cuernavaca Kaunas Trondheim Gdansk Mandalay
Winnipeg Marrakesh Kathmandu Thessaloniki Montevideo Guadalajara Poughkeepsie Llandudno Aberystwyth
Tbilisi Yerevan Ulaanbaatar Vladivostok Zanzibar Kilkenny Dubrovnik Bialystok Eindhoven Innsbruck
Kyoto Okinawa""".split()

RARE_WORDS = """quinoa sriracha kombucha ukulele xylophone axolotl capybara chartreuse zeitgeist marzipan
tamarind saxophone origami mozzarella pistachio""".split()

PERSON_TEMPLATES = [
    "please call {} tomorrow morning", "send the report to {} before lunch",
    "i had a long meeting with {} today", "remind me to email {} on friday",
    "{} will join the call at noon", "can you text {} that i am running late",
    "the invoice from {} arrived this week", "ask {} about the budget",
    "my appointment with {} was moved", "did {} reply to my message",
    "schedule a video call with {}", "forward this note to {}",
]
PLACE_TEMPLATES = [
    "book a flight to {} next month", "what is the weather like in {}",
    "our new office opens in {}", "how far is {} from here",
    "she grew up near {}", "the train to {} leaves at nine",
]
RARE_TEMPLATES = ["add {} to my shopping list", "we talked about {} all evening",
                  "she wrote a short essay on {}", "i would like some {} please"]


def _sentence(template: str, entity: str) -> Dict:
    """``speak``: what the engine reads (names capitalised, as in a text); ``text``: the normalised reference."""
    spoken = template.format(entity)
    speak = spoken[0].upper() + spoken[1:] + ("?" if spoken.startswith(("what", "how", "did", "can")) else ".")
    speak = speak.replace(" i ", " I ")
    return {"text": spoken.lower(), "speak": speak, "hotwords": [entity.lower()]}


def make_sentences(n_person: int = 90, n_place: int = 35, n_rare: int = 15, seed: int = 0) -> List[Dict]:
    """Sentences ``{"id", "text", "speak", "hotwords", "kind"}``, shuffled; each entity (a first name +
    surname pair, a place, a rare word) occurs in exactly one sentence. ValueError if the lists are too short."""
    rng = random.Random(seed)
    n_person = min(n_person, len(FIRST_NAMES))
    if n_person > len(SURNAMES) or n_place > len(PLACES) or n_rare > len(RARE_WORDS):
        raise ValueError("not enough names for that many sentences")
    firsts, lasts = rng.sample(FIRST_NAMES, n_person), rng.sample(SURNAMES, n_person)
    out = []
    for k, (f, s) in enumerate(zip(firsts, lasts)):
        out.append({**_sentence(PERSON_TEMPLATES[k % len(PERSON_TEMPLATES)], f"{f} {s}"), "kind": "person"})
    for k, p in enumerate(rng.sample(PLACES, n_place)):
        out.append({**_sentence(PLACE_TEMPLATES[k % len(PLACE_TEMPLATES)], p), "kind": "place"})
    for k, w in enumerate(rng.sample(RARE_WORDS, n_rare)):
        out.append({**_sentence(RARE_TEMPLATES[k % len(RARE_TEMPLATES)], w), "kind": "rare"})
    rng.shuffle(out)
    for k, s in enumerate(out):
        s["id"] = f"names-{k:04d}"
    return out
