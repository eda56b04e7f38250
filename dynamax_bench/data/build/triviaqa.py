"""Write the project's own TriviaQA-style questions: dynamax_bench/data/triviaqa.jsonl (evaluation)
and triviaqa.train.jsonl (the few-shot pool, disjoint from the evaluation questions).

Facts checked by hand; the schema mirrors Hugging Face `trivia_qa` (rc.nocontext, validation),
with the normalised fields computed by TriviaQA's own `normalize_answer`.
Run: python -m dynamax_bench.data.build.triviaqa
"""

import re
import string
from pathlib import Path

from dynamax_bench.files import write_jsonl

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


if __name__ == "__main__":
    data = Path(__file__).resolve().parents[1]
    overlap = {q for q, _, _ in QUESTIONS} & {q for q, _, _ in FEWSHOT}
    assert not overlap, f"few-shot questions also in the evaluation set: {overlap}"
    write_jsonl(data / "triviaqa.jsonl", (record("dynamax_tqa", i, *q) for i, q in enumerate(QUESTIONS)))
    write_jsonl(data / "triviaqa.train.jsonl", (record("dynamax_tqa_shot", i, *q) for i, q in enumerate(FEWSHOT)))
    print(f"wrote {len(QUESTIONS)} evaluation and {len(FEWSHOT)} few-shot questions to {data}")
