"""Names for containers created without one: adjective_surname, as Docker makes them."""

from __future__ import annotations

import secrets

ADJECTIVES = (
    "admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome",
    "beautiful", "blissful", "bold", "boring", "brave", "busy", "charming", "clever",
    "compassionate", "competent", "condescending", "confident", "cool", "cranky", "crazy",
    "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic", "elastic",
    "elated", "elegant", "eloquent", "epic", "exciting", "fervent", "festive", "flamboyant",
    "focused", "friendly", "frosty", "funny", "gallant", "gifted", "goofy", "gracious",
    "great", "happy", "hardcore", "heuristic", "hopeful", "hungry", "infallible", "inspiring",
    "intelligent", "interesting", "jolly", "jovial", "keen", "kind", "laughing", "loving",
    "lucid", "magical", "modest", "musing", "mystifying", "naughty", "nervous", "nice",
    "nifty", "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive",
    "practical", "priceless", "quirky", "quizzical", "recursing", "relaxed", "reverent",
    "romantic", "sad", "serene", "sharp", "silly", "sleepy", "stoic", "strange", "stupefied",
    "suspicious", "sweet", "tender", "thirsty", "trusting", "unruffled", "upbeat", "vibrant",
    "vigilant", "vigorous", "wizardly", "wonderful", "xenodochial", "youthful", "zealous",
    "zen",
)
SURNAMES = (
    "agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "aryabhata",
    "austin", "babbage", "banach", "bardeen", "bartik", "bassi", "bell", "benz", "bhabha",
    "blackwell", "bohr", "booth", "borg", "bose", "brahmagupta", "brattain", "brown",
    "carson", "cerf", "chandrasekhar", "clarke", "colden", "cori", "cray", "curie", "darwin",
    "davinci", "dijkstra", "dubinsky", "easley", "edison", "einstein", "elion", "engelbart",
    "euclid", "euler", "faraday", "fermat", "fermi", "feynman", "franklin", "galileo",
    "gates", "goldberg", "goldstine", "goldwasser", "goodall", "hamilton", "hawking",
    "heisenberg", "hertz", "hodgkin", "hofstadter", "hopper", "hypatia", "jackson", "jang",
    "jennings", "johnson", "joliot", "kalam", "kepler", "khorana", "kilby", "knuth",
    "lalande", "lamarr", "lamport", "leakey", "leavitt", "lovelace", "lumiere", "mayer",
    "mccarthy", "mcclintock", "meitner", "mendel", "mendeleev", "minsky", "mirzakhani",
    "morse", "napier", "nash", "neumann", "newton", "nobel", "noether", "noyce", "pascal",
    "pasteur", "payne", "perlman", "pike", "poincare", "ptolemy", "raman", "ramanujan",
    "ride", "ritchie", "rosalind", "sammet", "shannon", "shockley", "sinoussi", "snyder",
    "spence", "stonebraker", "swanson", "swartz", "tesla", "thompson", "torvalds", "turing",
    "varahamihira", "visvesvaraya", "volhard", "wescoff", "wiles", "williams", "wilson",
    "wing", "wozniak", "wright", "yalow", "yonath",
)


def generate() -> str:
    return f"{secrets.choice(ADJECTIVES)}_{secrets.choice(SURNAMES)}"
