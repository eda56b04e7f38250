"""Write the project's own TriviaQA-style questions: dynamax_bench/data/triviaqa.jsonl (evaluation),
triviaqa.train.jsonl (the few-shot pool) and triviaqa.calibration.jsonl (the calibration split, for
thresholds calibrated on samples that are never evaluated), three disjoint sets of questions.

Facts checked by hand; the schema mirrors Hugging Face `trivia_qa` (rc.nocontext, validation),
with the normalised fields computed by TriviaQA's own `normalize_answer`.
Run: python -m dynamax_bench.data.build.triviaqa
"""

import re
import string
from pathlib import Path

from dynamax_bench.files import write_jsonl

DATA = Path(__file__).resolve().parents[1]
_PUNCTUATION = set(string.punctuation + "‘’´`")


def normalize_answer(text: str) -> str:
    """TriviaQA's own normalisation (triviaqa/utils/dataset_utils.py), which made the dataset's
    normalized_* fields: punctuation becomes a space. Scoring uses SQuAD's (generation/answers.py)."""
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split()).strip()


QUESTIONS: list[tuple[str, list[str], str]] = [
    ("What is the capital city of France?", ["Paris"], "WikipediaEntity"),
    ("Which planet is known as the Red Planet?", ["Mars", "Planet Mars"], "WikipediaEntity"),
    ("Who wrote the play Romeo and Juliet?", ["William Shakespeare", "Shakespeare"], "WikipediaEntity"),
    ("What is the largest ocean on Earth?", ["Pacific Ocean", "Pacific", "The Pacific"], "WikipediaEntity"),
    ("What is the chemical symbol for gold?", ["Au"], "WikipediaEntity"),
    ("How many days are there in a leap year?", ["366", "Three hundred and sixty-six"], "Numerical"),
    ("Which gas do plants absorb from the atmosphere for photosynthesis?", ["Carbon dioxide", "CO2"], "WikipediaEntity"),
    ("Who painted the Mona Lisa?", ["Leonardo da Vinci", "Leonardo", "Da Vinci"], "WikipediaEntity"),
    ("What is the capital city of Japan?", ["Tokyo"], "WikipediaEntity"),
    ("What is the largest planet in the Solar System?", ["Jupiter", "Planet Jupiter"], "WikipediaEntity"),
    ("What is the freezing point of water in degrees Celsius?", ["0", "Zero", "0 degrees"], "Numerical"),
    ("Which animal is known as the King of the Jungle?", ["Lion", "The lion", "Lions"], "WikipediaEntity"),
    ("In which country are the Pyramids of Giza?", ["Egypt"], "WikipediaEntity"),
    ("What is the hardest natural substance?", ["Diamond", "Diamonds"], "WikipediaEntity"),
    ("Who was the first President of the United States?", ["George Washington", "Washington"], "WikipediaEntity"),
    ("What is the capital city of Italy?", ["Rome", "Roma"], "WikipediaEntity"),
    ("How many continents are there on Earth?", ["7", "Seven"], "Numerical"),
    ("What is the main language spoken in Brazil?", ["Portuguese", "Portuguese language"], "WikipediaEntity"),
    ("Which organ pumps blood around the human body?", ["Heart", "The heart"], "WikipediaEntity"),
    ("What is the tallest mountain in the world above sea level?", ["Mount Everest", "Everest", "Mt Everest"], "WikipediaEntity"),
    ("Who developed the theory of general relativity?", ["Albert Einstein", "Einstein"], "WikipediaEntity"),
    ("What is the capital city of Germany?", ["Berlin"], "WikipediaEntity"),
    ("Which element has the chemical symbol O?", ["Oxygen"], "WikipediaEntity"),
    ("What is the longest river in South America?", ["Amazon", "Amazon River", "River Amazon"], "WikipediaEntity"),
    ("How many legs does a spider have?", ["8", "Eight"], "Numerical"),
    ("Which country gifted the Statue of Liberty to the United States?", ["France"], "WikipediaEntity"),
    ("What is the smallest prime number?", ["2", "Two"], "Numerical"),
    ("Who wrote the novel Pride and Prejudice?", ["Jane Austen", "Austen"], "WikipediaEntity"),
    ("What is the capital city of Spain?", ["Madrid"], "WikipediaEntity"),
    ("Which planet is closest to the Sun?", ["Mercury", "Planet Mercury"], "WikipediaEntity"),
    ("What is the largest mammal on Earth?", ["Blue whale", "Blue whales"], "WikipediaEntity"),
    ("In which city is the Eiffel Tower?", ["Paris"], "WikipediaEntity"),
    ("What is the boiling point of water at sea level in degrees Celsius?", ["100", "One hundred", "100 degrees"], "Numerical"),
    ("Who discovered penicillin?", ["Alexander Fleming", "Fleming", "Sir Alexander Fleming"], "WikipediaEntity"),
    ("What is the capital city of Canada?", ["Ottawa"], "WikipediaEntity"),
    ("Which instrument has 88 keys?", ["Piano", "The piano", "Pianoforte"], "WikipediaEntity"),
    ("What is the currency of the United Kingdom?", ["Pound sterling", "Pound", "Sterling", "British pound"], "WikipediaEntity"),
    ("How many sides does a hexagon have?", ["6", "Six"], "Numerical"),
    ("Which ocean lies between Africa and Australia?", ["Indian Ocean", "Indian"], "WikipediaEntity"),
    ("Who was the first person to walk on the Moon?", ["Neil Armstrong", "Armstrong"], "WikipediaEntity"),
    ("What is the capital city of Australia?", ["Canberra"], "WikipediaEntity"),
    ("What is the largest desert in Africa?", ["Sahara", "Sahara Desert", "The Sahara"], "WikipediaEntity"),
    ("Which metal is liquid at room temperature?", ["Mercury", "Quicksilver", "Hg"], "WikipediaEntity"),
    ("Who composed the Fifth Symphony that opens with four famous notes?", ["Ludwig van Beethoven", "Beethoven"], "WikipediaEntity"),
    ("What is the capital city of Russia?", ["Moscow"], "WikipediaEntity"),
    ("How many minutes are there in an hour?", ["60", "Sixty"], "Numerical"),
    ("Which country is home to the kangaroo?", ["Australia"], "WikipediaEntity"),
    ("What is the name of the galaxy that contains the Solar System?", ["Milky Way", "The Milky Way", "Milky Way Galaxy"], "WikipediaEntity"),
    ("Who wrote the Harry Potter books?", ["J. K. Rowling", "J.K. Rowling", "JK Rowling", "Rowling", "Joanne Rowling"], "WikipediaEntity"),
    ("What is the capital city of Egypt?", ["Cairo"], "WikipediaEntity"),
    ("What colour do you get by mixing blue and yellow?", ["Green"], "FreeForm"),
    ("Which bird is a symbol of peace?", ["Dove", "The dove", "White dove", "Doves"], "FreeForm"),
    ("What is the largest country in the world by area?", ["Russia", "Russian Federation"], "WikipediaEntity"),
    ("Who invented the telephone?", ["Alexander Graham Bell", "Bell", "Graham Bell"], "WikipediaEntity"),
    ("What is the capital city of China?", ["Beijing", "Peking"], "WikipediaEntity"),
    ("Which vitamin does the human body make when the skin is exposed to sunlight?", ["Vitamin D", "D"], "WikipediaEntity"),
    ("How many players are on the field for one team in a game of football (soccer)?", ["11", "Eleven"], "Numerical"),
    ("What is the name of the ship that sank in 1912 after hitting an iceberg?", ["Titanic", "RMS Titanic", "The Titanic"], "WikipediaEntity"),
    ("Which famous scientist proposed the laws of motion and universal gravitation?", ["Isaac Newton", "Newton", "Sir Isaac Newton"], "WikipediaEntity"),
    ("What is the capital city of India?", ["New Delhi", "Delhi"], "WikipediaEntity"),
    ("Which is the longest bone in the human body?", ["Femur", "Thigh bone", "Thighbone"], "WikipediaEntity"),
    ("In which year did the Second World War end?", ["1945"], "Numerical"),
    ("What is the square root of 81?", ["9", "Nine"], "Numerical"),
    ("Which continent is the Sahara Desert in?", ["Africa"], "WikipediaEntity"),
]


FEWSHOT: list[tuple[str, list[str], str]] = [
    ("What is the capital city of Portugal?", ["Lisbon", "Lisboa"], "WikipediaEntity"),
    ("Who wrote the novel War and Peace?", ["Leo Tolstoy", "Tolstoy"], "WikipediaEntity"),
    ("Which planet has the most prominent rings in the Solar System?", ["Saturn", "Planet Saturn"], "WikipediaEntity"),
    ("What is the chemical symbol for iron?", ["Fe"], "WikipediaEntity"),
    ("In which country is the city of Kyoto?", ["Japan"], "WikipediaEntity"),
    ("Who painted The Starry Night?", ["Vincent van Gogh", "Van Gogh"], "WikipediaEntity"),
    ("How many strings does a standard violin have?", ["4", "Four"], "Numerical"),
    ("Which sea separates Europe from Africa to the east of Gibraltar?", ["Mediterranean Sea", "Mediterranean"], "WikipediaEntity"),
]


# The calibration split: questions of the same kind (general knowledge, one short unambiguous answer
# that has not changed over time), none of them an evaluation or few-shot question, and none
# asking for an answer that an evaluation or few-shot question asks for.
CALIBRATION: list[tuple[str, list[str], str]] = [
    ("What is the capital city of Kenya?", ["Nairobi"], "WikipediaEntity"),
    ("What is the capital city of Argentina?", ["Buenos Aires"], "WikipediaEntity"),
    ("What is the capital city of Norway?", ["Oslo"], "WikipediaEntity"),
    ("What is the capital city of Mexico?", ["Mexico City", "Ciudad de México"], "WikipediaEntity"),
    ("What is the capital city of Ireland?", ["Dublin"], "WikipediaEntity"),
    ("What is the capital city of Sweden?", ["Stockholm"], "WikipediaEntity"),
    ("What is the capital city of Thailand?", ["Bangkok", "Krung Thep"], "WikipediaEntity"),
    ("What is the capital city of Poland?", ["Warsaw", "Warszawa"], "WikipediaEntity"),
    ("What is the capital city of South Korea?", ["Seoul"], "WikipediaEntity"),
    ("What is the capital city of Greece?", ["Athens", "Athina"], "WikipediaEntity"),
    ("What is the capital city of Austria?", ["Vienna", "Wien"], "WikipediaEntity"),
    ("Which planet is the hottest in the Solar System?", ["Venus", "Planet Venus"], "WikipediaEntity"),
    ("What is the chemical symbol for sodium?", ["Na"], "WikipediaEntity"),
    ("What is the chemical symbol for silver?", ["Ag"], "WikipediaEntity"),
    ("Which gas makes up most of the Earth's atmosphere?", ["Nitrogen", "N2"], "WikipediaEntity"),
    ("Which element has the atomic number 1?", ["Hydrogen", "H"], "WikipediaEntity"),
    ("What is the chemical formula of water?", ["H2O", "H₂O"], "FreeForm"),
    ("What is the largest organ of the human body?", ["Skin", "The skin"], "WikipediaEntity"),
    ("What is the fastest land animal?", ["Cheetah", "Cheetahs", "The cheetah"], "WikipediaEntity"),
    ("What is the tallest animal in the world?", ["Giraffe", "Giraffes", "The giraffe"], "WikipediaEntity"),
    ("Which bird lays the largest eggs?", ["Ostrich", "Ostriches", "The ostrich"], "WikipediaEntity"),
    ("What is the largest species of big cat?", ["Tiger", "Tigers", "The tiger"], "WikipediaEntity"),
    ("How many degrees are there in a right angle?", ["90", "Ninety", "90 degrees"], "Numerical"),
    ("How many sides does a pentagon have?", ["5", "Five"], "Numerical"),
    ("What is twelve multiplied by twelve?", ["144", "One hundred and forty-four", "One hundred forty-four"], "Numerical"),
    ("What is the name of the imaginary line that divides the Earth into the Northern and Southern Hemispheres?",
     ["Equator", "The Equator"], "WikipediaEntity"),
    ("Which vitamin is found in large amounts in oranges and lemons?", ["Vitamin C", "C", "Ascorbic acid"], "WikipediaEntity"),
    ("What is the name of the Earth's only natural satellite?", ["Moon", "The Moon", "Luna"], "WikipediaEntity"),
    ("How many teeth are in a full set of adult human teeth?", ["32", "Thirty-two"], "Numerical"),
    ("Which organs of the human body take in oxygen from the air we breathe?", ["Lungs", "The lungs", "Lung"], "WikipediaEntity"),
    ("How many wheels does a tricycle have?", ["3", "Three"], "Numerical"),
    ("What is the largest continent by area?", ["Asia"], "WikipediaEntity"),
    ("What is the longest river in Africa?", ["Nile", "River Nile", "The Nile", "Nile River"], "WikipediaEntity"),
    ("In which country is Machu Picchu?", ["Peru"], "WikipediaEntity"),
    ("In which city is the Taj Mahal?", ["Agra"], "WikipediaEntity"),
    ("What is the highest mountain in Africa?", ["Mount Kilimanjaro", "Kilimanjaro", "Mt Kilimanjaro"], "WikipediaEntity"),
    ("Which river flows through London?", ["River Thames", "Thames", "The Thames"], "WikipediaEntity"),
    ("What is the name of the large coral reef system off the coast of north-eastern Australia?",
     ["Great Barrier Reef", "The Great Barrier Reef"], "WikipediaEntity"),
    ("In which country is the city of Marrakesh?", ["Morocco"], "WikipediaEntity"),
    ("What language is mainly spoken in Mexico?", ["Spanish", "Spanish language"], "WikipediaEntity"),
    ("What is the currency of Japan?", ["Yen", "Japanese yen"], "WikipediaEntity"),
    ("What is the currency of the United States?", ["US dollar", "Dollar", "United States dollar", "American dollar", "USD"],
     "WikipediaEntity"),
    ("On which continent is Brazil?", ["South America"], "WikipediaEntity"),
    ("Who wrote the novel Nineteen Eighty-Four?", ["George Orwell", "Orwell", "Eric Arthur Blair"], "WikipediaEntity"),
    ("Who wrote the novel Moby-Dick?", ["Herman Melville", "Melville"], "WikipediaEntity"),
    ("Who wrote The Adventures of Tom Sawyer?", ["Mark Twain", "Twain", "Samuel Clemens", "Samuel Langhorne Clemens"],
     "WikipediaEntity"),
    ("Who wrote Alice's Adventures in Wonderland?", ["Lewis Carroll", "Carroll", "Charles Lutwidge Dodgson"],
     "WikipediaEntity"),
    ("Who wrote The Hobbit?", ["J. R. R. Tolkien", "J.R.R. Tolkien", "JRR Tolkien", "Tolkien"], "WikipediaEntity"),
    ("Who painted the ceiling of the Sistine Chapel?", ["Michelangelo", "Michelangelo Buonarroti"], "WikipediaEntity"),
    ("Who painted Guernica?", ["Pablo Picasso", "Picasso"], "WikipediaEntity"),
    ("Who composed The Four Seasons?", ["Antonio Vivaldi", "Vivaldi"], "WikipediaEntity"),
    ("Who composed the opera The Magic Flute?", ["Wolfgang Amadeus Mozart", "Mozart"], "WikipediaEntity"),
    ("What is the name of the fairy in Peter Pan?", ["Tinker Bell", "Tinkerbell"], "WikipediaEntity"),
    ("What is the surname of Sherlock Holmes's friend, the doctor who narrates most of his stories?",
     ["Watson", "Doctor Watson", "Dr Watson", "John Watson"], "WikipediaEntity"),
    ("Who was the first person to travel into space?", ["Yuri Gagarin", "Gagarin"], "WikipediaEntity"),
    ("Who was the first woman to fly solo across the Atlantic Ocean?", ["Amelia Earhart", "Earhart"], "WikipediaEntity"),
    ("Who wrote On the Origin of Species?", ["Charles Darwin", "Darwin"], "WikipediaEntity"),
    ("In which year did the First World War begin?", ["1914"], "Numerical"),
    ("In which year did Christopher Columbus first reach the Americas?", ["1492"], "Numerical"),
    ("Who was the British Prime Minister for most of the Second World War?", ["Winston Churchill", "Churchill",
     "Sir Winston Churchill"], "WikipediaEntity"),
    ("Who was the king of the gods in Greek mythology?", ["Zeus"], "WikipediaEntity"),
    ("In which sport is the Stanley Cup awarded?", ["Ice hockey", "Hockey"], "WikipediaEntity"),
    ("How many rings are there on the Olympic flag?", ["5", "Five"], "Numerical"),
    ("What is the main ingredient of guacamole?", ["Avocado", "Avocados"], "WikipediaEntity"),
]


def record(prefix: str, index: int, question: str, aliases: list[str], answer_type: str) -> dict:
    value = aliases[0]
    return {
        "question": question,
        "question_id": f"{prefix}_{index:03d}",
        "question_source": "dynamax-bench (written by the project)",
        "entity_pages": {"doc_source": [], "filename": [], "title": [], "wiki_context": []},
        "search_results": {
            "description": [], "filename": [], "rank": [], "title": [], "url": [], "search_context": []
        },
        "answer": {
            "aliases": aliases,
            "normalized_aliases": sorted({normalize_answer(a) for a in aliases}),
            "matched_wiki_entity_name": "",
            "normalized_matched_wiki_entity_name": "",
            "normalized_value": normalize_answer(value),
            "type": answer_type,
            "value": value,
        },
    }


def check_disjoint(sets: dict[str, list[tuple[str, list[str], str]]]) -> None:
    """No question (normalised) in two sets, and no calibration answer that an evaluation or few-shot
    question also has: a calibrated threshold must not be tuned on the evaluated questions."""
    seen: dict[str, str] = {}
    for name, questions in sets.items():
        for question, _, _ in questions:
            key = normalize_answer(question)
            if key in seen:
                raise ValueError(f"{question!r} is in both the {seen[key]} and the {name} set")
            seen[key] = name
    answers = {normalize_answer(a) for name in ("evaluation", "few-shot") for _, aliases, _ in sets[name] for a in aliases}
    shared = [q for q, aliases, _ in sets["calibration"] if answers & {normalize_answer(a) for a in aliases}]
    if shared:
        raise ValueError(f"calibration questions whose answer an evaluation or few-shot question has: {shared}")


def write(data: Path = DATA) -> list[Path]:
    """The evaluation set, the few-shot pool and the calibration split, written into `data`."""
    check_disjoint({"evaluation": QUESTIONS, "few-shot": FEWSHOT, "calibration": CALIBRATION})
    files = {"triviaqa.jsonl": ("dynamax_tqa", QUESTIONS), "triviaqa.train.jsonl": ("dynamax_tqa_shot", FEWSHOT),
             "triviaqa.calibration.jsonl": ("dynamax_tqa_cal", CALIBRATION)}
    for name, (prefix, questions) in files.items():
        write_jsonl(data / name, (record(prefix, i, *q) for i, q in enumerate(questions)))
    return [data / name for name in files]


if __name__ == "__main__":
    write()
    print(f"wrote {len(QUESTIONS)} evaluation, {len(FEWSHOT)} few-shot and {len(CALIBRATION)} calibration "
          f"questions to {DATA}")
