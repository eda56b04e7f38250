"""Write the project's own CoQA-style conversations: dynamax_bench/data/coqa.jsonl.

Ten short passages written by the project (five stories, five factual passages whose facts are
true), each with a conversation of at least five turns whose later questions lean on earlier
ones, as in CoQA. The schema mirrors Hugging Face `coqa` (validation): source, story,
questions [str], answers {input_text [str], answer_start [int], answer_end [int]}, where
answer_start/answer_end delimit the rationale span in the story (character offsets).
Run: python -m dynamax_bench.data.build.coqa
"""

from pathlib import Path

from dynamax_bench.files import write_jsonl

# (source, story, [(question, free-form answer, rationale span: a substring of the story)])
STORIES: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    (
        "dynamax-bench fiction",
        "Maya had saved her pocket money for three months to buy a red kite with a long yellow tail. "
        "On the first windy Saturday of spring she took it to the hill behind the school with her "
        "brother Leo. Leo held the kite while Maya ran, and it climbed high above the oak trees. "
        "After an hour the string snapped and the kite drifted over the fence into Mr. Patel's garden. "
        "Mr. Patel, who grew tomatoes and kept two grey cats, climbed a ladder and untangled the kite "
        "from his apple tree. He gave it back with a bag of apples, and Maya promised to bring him a "
        "drawing of the kite flying.",
        [
            ("What did Maya buy?", "a red kite", "a red kite with a long yellow tail"),
            ("How long did she save for it?", "three months", "saved her pocket money for three months"),
            ("Who went with her to the hill?", "her brother Leo", "with her brother Leo"),
            ("What happened after an hour?", "the string snapped", "After an hour the string snapped"),
            ("Where did the kite land?", "in Mr. Patel's garden", "into Mr. Patel's garden"),
            ("What was it caught in?", "his apple tree", "untangled the kite from his apple tree"),
            ("What did he give her with it?", "a bag of apples", "He gave it back with a bag of apples"),
        ],
    ),
    (
        "dynamax-bench factual",
        "The Eiffel Tower stands on the Champ de Mars in Paris. It was built for the 1889 World's Fair, "
        "which marked the hundredth anniversary of the French Revolution. The company of the engineer "
        "Gustave Eiffel designed and built it, and the tower is made of wrought iron. When it opened "
        "it was about 300 metres tall, and it remained the tallest structure built by people until the "
        "Chrysler Building in New York was completed in 1930. Many artists at first criticised its "
        "design, but it became the best known symbol of Paris.",
        [
            ("Where is the Eiffel Tower?", "on the Champ de Mars in Paris", "stands on the Champ de Mars in Paris"),
            ("For what event was it built?", "the 1889 World's Fair", "built for the 1889 World's Fair"),
            ("What anniversary did that event mark?", "the hundredth anniversary of the French Revolution",
             "the hundredth anniversary of the French Revolution"),
            ("Whose company built it?", "Gustave Eiffel's", "The company of the engineer Gustave Eiffel"),
            ("What is it made of?", "wrought iron", "the tower is made of wrought iron"),
            ("How tall was it when it opened?", "about 300 metres", "it was about 300 metres tall"),
            ("Which building became taller?", "the Chrysler Building", "until the Chrysler Building in New York was completed in 1930"),
        ],
    ),
    (
        "dynamax-bench fiction",
        "Tom opened his bakery on Mill Street at five o'clock every morning. His best seller was a "
        "cinnamon roll that his grandmother had taught him to make. One Tuesday the oven broke just "
        "before dawn, and Tom was sure he would have to close for the day. His neighbour Rosa, who ran "
        "the pizza restaurant next door, offered him her wood-fired oven until noon. The rolls came out "
        "darker than usual, but the customers said they tasted even better. Since then Tom has baked "
        "one tray of rolls in Rosa's oven every Friday.",
        [
            ("What time did Tom open his bakery?", "five o'clock", "at five o'clock every morning"),
            ("Where was it?", "on Mill Street", "his bakery on Mill Street"),
            ("What did he sell most of?", "cinnamon rolls", "His best seller was a cinnamon roll"),
            ("Who taught him the recipe?", "his grandmother", "his grandmother had taught him to make"),
            ("What went wrong one Tuesday?", "the oven broke", "the oven broke just before dawn"),
            ("Who helped him?", "Rosa", "His neighbour Rosa"),
            ("What kind of oven did she have?", "a wood-fired oven", "her wood-fired oven"),
            ("How often does he still use it?", "every Friday", "one tray of rolls in Rosa's oven every Friday"),
        ],
    ),
    (
        "dynamax-bench factual",
        "A honey bee colony has one queen, many thousands of female workers and, in summer, a few "
        "hundred male drones. The queen lays the eggs, and the drones' role is to mate with queens from "
        "other colonies. Workers do everything else: they clean the cells, feed the larvae, build wax "
        "comb and guard the entrance, and the older workers fly out to collect nectar and pollen. A "
        "forager that has found a rich patch of flowers performs a waggle dance in the hive, which tells "
        "her sisters the direction and distance of the food. Bees make honey by evaporating water from "
        "nectar and storing it in wax cells.",
        [
            ("How many queens does a colony have?", "one", "has one queen"),
            ("What does she do?", "lays the eggs", "The queen lays the eggs"),
            ("Are the workers male or female?", "female", "many thousands of female workers"),
            ("Which workers collect nectar?", "the older ones", "the older workers fly out to collect nectar and pollen"),
            ("How do they tell others where food is?", "a waggle dance", "performs a waggle dance in the hive"),
            ("What does it tell them?", "the direction and distance of the food", "the direction and distance of the food"),
            ("How is honey made?", "by evaporating water from nectar", "by evaporating water from nectar"),
        ],
    ),
    (
        "dynamax-bench fiction",
        "Every August Sam went fishing with his grandfather at a lake in the mountains. They left the "
        "cabin before sunrise and rowed a small green boat to the far shore, where the water was "
        "deepest. His grandfather always used worms, but Sam preferred a silver spoon lure. That year "
        "Sam caught a trout that was longer than his arm, and his grandfather took a photograph of him "
        "holding it. They let the fish go, because his grandfather said the biggest fish should stay in "
        "the lake. The photograph still hangs above the fireplace in the cabin.",
        [
            ("Who did Sam go fishing with?", "his grandfather", "fishing with his grandfather"),
            ("In which month?", "August", "Every August"),
            ("What colour was their boat?", "green", "a small green boat"),
            ("Why did they go to the far shore?", "the water was deepest there", "where the water was deepest"),
            ("What bait did Sam like?", "a silver spoon lure", "Sam preferred a silver spoon lure"),
            ("What did he catch that year?", "a trout", "Sam caught a trout"),
            ("Did they keep it?", "no", "They let the fish go"),
            ("Where is the photograph now?", "above the fireplace in the cabin", "hangs above the fireplace in the cabin"),
        ],
    ),
    (
        "dynamax-bench factual",
        "Apollo 11 was the first crewed mission to land on the Moon. It was launched from Florida on "
        "16 July 1969 with three astronauts: Neil Armstrong, Buzz Aldrin and Michael Collins. On 20 July "
        "Armstrong and Aldrin landed in the lunar module Eagle in the Sea of Tranquility, while Collins "
        "stayed in orbit in the command module Columbia. Armstrong was the first person to step onto "
        "the Moon, and Aldrin followed him about twenty minutes later. The two collected rock and soil "
        "samples, and all three astronauts returned safely to Earth on 24 July, splashing down in the "
        "Pacific Ocean.",
        [
            ("What was Apollo 11?", "the first crewed mission to land on the Moon", "the first crewed mission to land on the Moon"),
            ("When was it launched?", "16 July 1969", "launched from Florida on 16 July 1969"),
            ("How many astronauts were aboard?", "three", "with three astronauts"),
            ("Who stayed in orbit?", "Michael Collins", "Collins stayed in orbit"),
            ("In which module?", "Columbia", "the command module Columbia"),
            ("What was the lunar module called?", "Eagle", "the lunar module Eagle"),
            ("Where did it land?", "in the Sea of Tranquility", "in the Sea of Tranquility"),
            ("Who walked on the Moon first?", "Neil Armstrong", "Armstrong was the first person to step onto the Moon"),
            ("Where did they splash down?", "in the Pacific Ocean", "splashing down in the Pacific Ocean"),
        ],
    ),
    (
        "dynamax-bench fiction",
        "For the school science fair, Priya and her friend Ben built a small weather station. They "
        "measured the temperature with a thermometer, the rain with a plastic bottle cut in half, and the "
        "wind with a cup anemometer that Ben made from four paper cups and a pencil. For two weeks they "
        "wrote down their readings at eight in the morning and at four in the afternoon. Their chart "
        "showed that the windiest days were also the coldest. The judges gave them second prize, and "
        "the school kept the anemometer on the roof of the library.",
        [
            ("What did Priya and Ben build?", "a weather station", "built a small weather station"),
            ("What was the rain gauge made from?", "a plastic bottle cut in half", "the rain with a plastic bottle cut in half"),
            ("Who made the anemometer?", "Ben", "a cup anemometer that Ben made"),
            ("Out of what?", "four paper cups and a pencil", "four paper cups and a pencil"),
            ("For how long did they take readings?", "two weeks", "For two weeks"),
            ("What did the chart show?", "the windiest days were also the coldest", "the windiest days were also the coldest"),
            ("Which prize did they win?", "second prize", "The judges gave them second prize"),
        ],
    ),
    (
        "dynamax-bench factual",
        "The Amazon is the largest river in the world by the amount of water it carries. It rises in "
        "the Andes mountains of Peru and flows east across South America, mostly through Brazil, before "
        "it reaches the Atlantic Ocean. Its basin is covered by the largest tropical rainforest on Earth, "
        "home to jaguars, river dolphins and thousands of kinds of fish. The river has no bridge across "
        "its main channel, so people and goods cross it by boat. The city of Manaus, which lies in the "
        "middle of the rainforest where the Rio Negro joins the Amazon, is an important river port.",
        [
            ("What is the Amazon?", "the largest river in the world by the amount of water it carries",
             "the largest river in the world by the amount of water it carries"),
            ("Where does it rise?", "in the Andes mountains of Peru", "It rises in the Andes mountains of Peru"),
            ("Which ocean does it reach?", "the Atlantic", "it reaches the Atlantic Ocean"),
            ("Through which country does it mostly flow?", "Brazil", "mostly through Brazil"),
            ("What covers its basin?", "the largest tropical rainforest on Earth", "the largest tropical rainforest on Earth"),
            ("How do people cross the river?", "by boat", "cross it by boat"),
            ("Why?", "there is no bridge across its main channel", "The river has no bridge across its main channel"),
        ],
    ),
    (
        "dynamax-bench fiction",
        "When Biscuit the beagle slipped out of the garden gate, the Wilson children searched the whole "
        "street before dinner. Their mother printed posters with his photograph and their phone number, "
        "and the twins, Anna and Joe, put them on every lamp post. The next morning a bus driver called "
        "to say that a beagle was sleeping in the bus shelter by the park. Joe ran there with a box of "
        "dog biscuits, and Biscuit came out wagging his tail as soon as he heard the box rattle. Since "
        "then the gate has had a new lock.",
        [
            ("What kind of dog is Biscuit?", "a beagle", "Biscuit the beagle"),
            ("How did he get out?", "through the garden gate", "slipped out of the garden gate"),
            ("Who made the posters?", "their mother", "Their mother printed posters"),
            ("What was on them?", "his photograph and their phone number", "his photograph and their phone number"),
            ("Who called the next morning?", "a bus driver", "a bus driver called"),
            ("Where was the dog?", "in the bus shelter by the park", "sleeping in the bus shelter by the park"),
            ("What did Joe bring?", "a box of dog biscuits", "with a box of dog biscuits"),
            ("What has changed since then?", "the gate has a new lock", "the gate has had a new lock"),
        ],
    ),
    (
        "dynamax-bench factual",
        "Marie Curie was born in Warsaw in 1867 and moved to Paris to study physics and mathematics at "
        "the Sorbonne. With her husband Pierre Curie she studied radioactivity, a word she helped to "
        "make known, and in 1898 they announced two new elements, polonium and radium. She named "
        "polonium after Poland, her native country. In 1903 she shared the Nobel Prize in Physics with "
        "Pierre Curie and Henri Becquerel, becoming the first woman to win a Nobel Prize. In 1911 she won "
        "a second Nobel Prize, in Chemistry, and she remains the only person to have won Nobel Prizes in "
        "two different sciences.",
        [
            ("Where was Marie Curie born?", "in Warsaw", "born in Warsaw in 1867"),
            ("Where did she study?", "at the Sorbonne in Paris", "moved to Paris to study physics and mathematics at the Sorbonne"),
            ("Who did she work with?", "her husband Pierre Curie", "With her husband Pierre Curie"),
            ("Which elements did they announce?", "polonium and radium", "two new elements, polonium and radium"),
            ("What was the first one named after?", "Poland", "She named polonium after Poland"),
            ("When did she first win a Nobel Prize?", "1903", "In 1903 she shared the Nobel Prize in Physics"),
            ("In what field was the second?", "Chemistry", "a second Nobel Prize, in Chemistry"),
        ],
    ),
]


def record(index: int, source: str, story: str, turns: list[tuple[str, str, str]]) -> dict:
    starts = []
    for question, _, span in turns:
        if story.count(span) != 1:
            raise ValueError(f"story {index}, {question!r}: rationale {span!r} must occur exactly once in the story")
        starts.append(story.index(span))
    return {
        "source": source,
        "story": story,
        "questions": [question for question, _, _ in turns],
        "answers": {
            "input_text": [answer for _, answer, _ in turns],
            "answer_start": starts,
            "answer_end": [start + len(span) for start, (_, _, span) in zip(starts, turns)],
        },
    }


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "coqa.jsonl"
    assert all(len(turns) >= 5 for _, _, turns in STORIES)
    write_jsonl(out, (record(i, *story) for i, story in enumerate(STORIES)))
    print(f"wrote {len(STORIES)} stories, {sum(len(t) for _, _, t in STORIES)} turns, to {out}")
