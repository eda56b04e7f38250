"""Write the project's own CoQA-style conversations: dynamax_bench/data/coqa.jsonl (evaluation) and
coqa.calibration.jsonl (the calibration split: other stories).

Ten short passages written by the project (five stories, five factual passages whose facts are
true), each with a conversation of at least five turns whose later questions lean on earlier
ones, as in CoQA. The schema mirrors Hugging Face `coqa` (validation): source, story,
questions [str], answers {input_text [str], answer_start [int], answer_end [int]}, where
answer_start/answer_end delimit the rationale span in the story (character offsets).
Run: python -m dynamax_bench.data.build.coqa
"""

from pathlib import Path

from dynamax_bench.files import write_jsonl

DATA = Path(__file__).resolve().parents[1]

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


# The calibration split: forty more passages, 92 to 124 words each, from the kinds of source
# CoQA draws on (children's stories, news, encyclopedia articles, literature, reading exams), each
# with two turns. The news reports and stories are invented; the encyclopedia passages are true.
# A story is the calibration unit (its turns share a prompt), so two turns per story give many
# units from few words.
CHILDREN, NEWS, ENCYCLOPEDIA, LITERATURE, EXAM = (
    f"dynamax-bench {kind}" for kind in ("children's story", "news", "encyclopedia", "literature", "exam"))

CALIBRATION: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    (
        CHILDREN,
        "Lily wanted a pet more than anything, but her apartment building did not allow cats or dogs. One "
        "morning her father came home with a small glass tank and two goldfish. Lily named the orange one "
        "Sunny and the white one Cloud. Every day after school she fed them a pinch of flakes and told them "
        "about her day. On Saturdays she helped her father clean the tank with a little net and a bucket. "
        "When her friend Omar visited, he said the fish looked happy. Lily drew a picture of Sunny and Cloud "
        "and hung it on the fridge, right next to her school timetable.",
        [
            ("What did Lily's father bring home?", "two goldfish", "a small glass tank and two goldfish"),
            ("What did she name the white one?", "Cloud", "the white one Cloud"),
        ],
    ),
    (
        CHILDREN,
        "Ben the rabbit lived at the edge of a big green meadow. Every spring he planted a row of carrots "
        "behind his burrow. This year a family of crows kept pulling up the seeds before they could grow. "
        "Ben asked his friend Hattie the hedgehog for advice. Hattie told him to build a scarecrow out of "
        "sticks, straw and an old blue coat. Together they built it in one afternoon and gave it a hat made "
        "from a flower pot. The crows flew away as soon as they saw it. By summer Ben had so many carrots "
        "that he shared a basket with every animal in the meadow.",
        [
            ("Who gave Ben advice?", "Hattie the hedgehog", "his friend Hattie the hedgehog"),
            ("What was the scarecrow's hat made from?", "a flower pot", "a hat made from a flower pot"),
        ],
    ),
    (
        CHILDREN,
        "On the last day of school, Mrs. Green's class went on a trip to the city aquarium. The bus left at "
        "nine o'clock, and the children sang songs all the way there. The first room had a huge tank full of "
        "bright fish and a sleepy sea turtle. Carlos liked the sharks best, but his friend Mei could not stop "
        "watching the jellyfish glow in the dark. At lunch time they ate sandwiches on the grass outside. "
        "Before going home, each child was allowed to buy one thing in the gift shop. Mei chose a pencil "
        "shaped like an eel, and Carlos bought a book about sharks.",
        [
            ("Which animals did Mei like to watch?", "the jellyfish", "could not stop watching the jellyfish"),
            ("What did she buy?", "a pencil shaped like an eel", "a pencil shaped like an eel"),
        ],
    ),
    (
        CHILDREN,
        "Grandma Rose had a garden full of sunflowers that grew taller than the fence. Every August her "
        "grandson Eli came to stay for two weeks. His favourite job was to measure the tallest sunflower "
        "with a long yellow tape. This year it was almost three metres tall, a new record. Eli wrote the "
        "number in a notebook that Grandma had kept since he was four years old. In the evenings they sat "
        "on the porch and watched the birds eat the seeds. On his last day Eli saved a handful of seeds in "
        "an envelope so that he could plant his own sunflowers at home.",
        [
            ("How tall was the tallest sunflower this year?", "almost three metres", "almost three metres tall"),
            ("Where did Eli write it down?", "in a notebook", "wrote the number in a notebook"),
        ],
    ),
    (
        CHILDREN,
        "Nora could not find her left shoe, and the school bus was coming in ten minutes. She looked under "
        "her bed, behind the sofa and even in the bathtub. Her little brother Sam said he had not seen it, "
        "but he was smiling. Nora asked their dog Pepper, who wagged his tail and ran into the garden. "
        "There, next to the rose bush, was the shoe, a little wet and covered in mud. Sam laughed and said "
        "that Pepper had taken it outside while Nora ate breakfast. Nora wiped the shoe with a towel, put "
        "it on, and caught the bus just in time.",
        [
            ("Where was the shoe?", "next to the rose bush", "next to the rose bush"),
            ("Who had taken it there?", "Pepper", "Pepper had taken it outside while Nora ate breakfast"),
        ],
    ),
    (
        CHILDREN,
        "When the snow finally stopped, the children of Birch Lane ran outside to build a snowman. Ava "
        "rolled the biggest ball for the body, and her cousin Max made the head. They used two black "
        "buttons for the eyes and a carrot for the nose. Max wanted the snowman to have a scarf, so he "
        "borrowed a striped one from his father. The snowman was so big that the neighbours came out to "
        "take photographs. Three days later the sun came out and the snowman began to melt. All that was "
        "left at the end of the week was the carrot and the striped scarf.",
        [
            ("Who made the snowman's head?", "Max", "her cousin Max made the head"),
            ("What was left at the end of the week?", "the carrot and the striped scarf",
             "the carrot and the striped scarf"),
        ],
    ),
    (
        CHILDREN,
        "Felix the cat liked to sleep in a sunny spot by the kitchen window. One afternoon a small brown "
        "mouse ran across the floor and hid under the cupboard. Felix opened one eye, yawned, and went back "
        "to sleep. The mouse was so surprised that it came out to look at him. The next day the mouse came "
        "back, and the day after that. Soon the two of them spent every afternoon together by the window. "
        "The family laughed when they saw a cat and a mouse sharing the same patch of sunshine. The mouse "
        "never took any food, except for a crumb of cheese on Sundays.",
        [
            ("Where did the mouse hide?", "under the cupboard", "hid under the cupboard"),
            ("What did it take on Sundays?", "a crumb of cheese", "a crumb of cheese on Sundays"),
        ],
    ),
    (
        CHILDREN,
        "Jamal's class planted a tree in the school yard on Earth Day. Their teacher, Mr. Ortiz, chose a "
        "young maple because its leaves turn red in the autumn. Each student put one shovel of soil around "
        "its roots, and Jamal poured the first bucket of water. The class made a sign with the tree's name, "
        "Ruby, painted in big letters. All spring the children took turns watering Ruby during break. In "
        "October the leaves turned bright red, just as Mr. Ortiz had promised. The class took a photograph "
        "under the tree, and it now hangs in the school hall.",
        [
            ("What kind of tree did the class plant?", "a maple", "a young maple"),
            ("What did they call it?", "Ruby", "the tree's name, Ruby"),
        ],
    ),
    (
        NEWS,
        "The public library in the town of Westbrook reopened on Monday after a year of repairs that "
        "followed a storm which damaged its roof. The renovation cost 2.4 million dollars, most of it paid "
        "by the state, and added a children's reading room and a small recording studio. Head librarian "
        "Karen Mills said that more than 600 people visited on the first day. Local students helped to move "
        "about 20,000 books back onto the shelves over the weekend, forming a human chain from the storage "
        "trucks to the front door. The library will now stay open until nine o'clock on weekday evenings, "
        "two hours later than before.",
        [
            ("Why had the library been closed?", "a storm damaged its roof", "a storm which damaged its roof"),
            ("How many people visited on the first day?", "more than 600", "more than 600 people visited"),
        ],
    ),
    (
        NEWS,
        "A 67-year-old grandmother from the coastal town of Port Ellis finished her first marathon on "
        "Sunday, nine years after doctors told her she might never walk without a stick. Margaret Lowe "
        "crossed the line in five hours and twelve minutes, cheered on by eleven grandchildren in matching "
        "orange shirts. Lowe began by walking around her garden after a hip operation and slowly built up "
        "to running. She said she had trained three mornings a week along the beach. The race organisers "
        "said she was the oldest woman to finish this year. Lowe has already signed up for another marathon "
        "in the autumn.",
        [
            ("How long did Margaret Lowe take to finish?", "five hours and twelve minutes",
             "five hours and twelve minutes"),
            ("Where did she train?", "along the beach", "three mornings a week along the beach"),
        ],
    ),
    (
        NEWS,
        "Firefighters in the city of Harlow rescued a kitten that had been stuck for two days in a drainpipe "
        "beneath a busy road. Neighbours heard faint meowing on Tuesday night and called the fire service. "
        "Crews had to close one lane of traffic and use a small camera to find where the kitten was trapped. "
        "After four hours of careful digging, firefighter Dan Price lifted the grey kitten out and wrapped it "
        "in his jacket. A vet said the animal was hungry but unhurt. The kitten has been adopted by the "
        "family who first heard it and has been named Piper.",
        [
            ("How long had the kitten been stuck?", "two days", "stuck for two days"),
            ("What is it called now?", "Piper", "has been named Piper"),
        ],
    ),
    (
        NEWS,
        "A team of four high school students from Lakeview won a national robotics contest on Saturday with a "
        "robot that sorts recycling. The robot, which the students call Bin-E, uses a camera to tell plastic "
        "bottles from cans and paper. The team built it in their school's basement over six months, using "
        "parts from old printers and a borrowed motor. Their coach, physics teacher Linda Park, said the "
        "students stayed after school almost every day. The prize is 10,000 dollars, which the team plans to "
        "give to their school's science club. They have also been invited to show the robot at a technology "
        "fair next month.",
        [
            ("What does the students' robot do?", "it sorts recycling", "a robot that sorts recycling"),
            ("What will they do with the prize?", "give it to their school's science club",
             "give to their school's science club"),
        ],
    ),
    (
        NEWS,
        "Heavy rain caused the River Alder to burst its banks on Thursday, flooding dozens of homes in the "
        "village of Millbrook. Emergency services used boats to bring about forty residents to safety, and "
        "no one was seriously hurt. The village school was turned into a shelter, where volunteers served "
        "hot soup and handed out blankets. The river rose nearly two metres in six hours, according to the "
        "local council. Farmers said that several fields of wheat were under water. Officials expect the "
        "water to go down over the weekend, and they have asked people not to drive on flooded roads.",
        [
            ("How were the residents brought to safety?", "by boat",
             "used boats to bring about forty residents to safety"),
            ("What was the school used as?", "a shelter", "turned into a shelter"),
        ],
    ),
    (
        NEWS,
        "A wedding ring lost on a beach in 1996 has been returned to its owner after a metal detector "
        "enthusiast found it in the sand. Peter Haines, a retired postman, was searching the beach at "
        "Sandwell Bay when his detector beeped near the old pier. The gold ring was engraved with two names "
        "and a date, June 1994. Haines posted a photograph of the ring online, and within a day a woman "
        "named Claire Dobbs recognised it. She said she had lost it while swimming on holiday. Haines drove "
        "for two hours to hand the ring back to her in person.",
        [
            ("What was Peter Haines's job before he retired?", "postman", "a retired postman"),
            ("What was engraved on the ring?", "two names and a date", "engraved with two names and a date"),
        ],
    ),
    (
        NEWS,
        "The city of Greenford opened a new footbridge over the railway on Friday, sparing thousands of "
        "commuters a fifteen-minute walk around the station. The bridge is 80 metres long and has lifts at "
        "both ends for wheelchairs and bicycles. It was designed by a local firm of architects after a "
        "competition in which residents voted for their favourite plan. The mayor cut a ribbon at seven in "
        "the morning, and the first people across were a group of nurses coming off a night shift at the "
        "hospital. The project took two years to build and cost 6 million pounds.",
        [
            ("How long is the bridge?", "80 metres", "The bridge is 80 metres long"),
            ("Who crossed it first?", "a group of nurses", "a group of nurses coming off a night shift"),
        ],
    ),
    (
        NEWS,
        "A farmers market that began with six stalls in a church car park has grown into the largest weekly "
        "market in the county, its organisers said on Wednesday. The Oakfield Market now has more than ninety "
        "sellers offering fruit, cheese, bread and flowers every Saturday morning. It was started ten years "
        "ago by two sisters, Ruth and Sally Ahmed, who wanted a place to sell the vegetables from their "
        "gardens. The market has moved twice and now fills the town square. To celebrate its tenth birthday, "
        "the organisers will give a free jar of local honey to the first hundred visitors this weekend.",
        [
            ("Who started the market?", "two sisters, Ruth and Sally Ahmed", "two sisters, Ruth and Sally Ahmed"),
            ("What will the first hundred visitors get this weekend?", "a free jar of local honey",
             "a free jar of local honey"),
        ],
    ),
    (
        ENCYCLOPEDIA,
        "The Panama Canal is a waterway across the Isthmus of Panama that connects the Atlantic Ocean with "
        "the Pacific Ocean. It is about 82 kilometres long. A French company began work on a canal in 1881, "
        "but the project failed because of engineering problems and diseases such as malaria and yellow "
        "fever, which killed thousands of workers. The United States took over the project in 1904 and "
        "opened the canal in 1914. Locks raise ships to Gatun Lake, an artificial lake about 26 metres above "
        "sea level, and lower them again on the other side. The United States controlled the canal until 31 "
        "December 1999, when it was handed over to Panama.",
        [
            ("When did the canal open?", "1914", "opened the canal in 1914"),
            ("Who was it handed over to in 1999?", "Panama", "it was handed over to Panama"),
        ],
    ),
    (
        ENCYCLOPEDIA,
        "The emperor penguin is the tallest and heaviest of all living penguins and lives only in Antarctica. "
        "Unlike most birds, it breeds during the Antarctic winter. After the female lays a single egg, she "
        "passes it to the male and walks back to the sea to feed. The male keeps the egg warm on top of his "
        "feet, under a fold of skin called a brood pouch, for about two months, eating nothing during that "
        "time. To survive temperatures far below freezing and strong winds, the males huddle together in "
        "large groups and take turns standing on the cold outside edge.",
        [
            ("Who keeps the egg warm?", "the male", "The male keeps the egg warm"),
            ("For how long?", "about two months", "for about two months"),
        ],
    ),
    (
        ENCYCLOPEDIA,
        "Orville and Wilbur Wright were two American brothers who ran a bicycle shop in Dayton, Ohio, and "
        "became interested in flying machines in the 1890s. They tested their gliders at Kitty Hawk, North "
        "Carolina, because of its steady winds and soft sand. On 17 December 1903 they made the first "
        "controlled, sustained flight of a powered aeroplane that was heavier than air. Orville flew first, "
        "staying in the air for 12 seconds and covering about 37 metres. They made four flights that day, "
        "and the longest, piloted by Wilbur, lasted 59 seconds. Their aircraft, the Wright Flyer, is now "
        "displayed at the Smithsonian in Washington, D.C.",
        [
            ("What business did the Wright brothers run?", "a bicycle shop", "ran a bicycle shop in Dayton, Ohio"),
            ("How long did the first flight last?", "12 seconds", "staying in the air for 12 seconds"),
        ],
    ),
    (
        ENCYCLOPEDIA,
        "Mount Vesuvius is a volcano on the Bay of Naples in southern Italy. In the year 79 AD it erupted "
        "violently and buried the Roman towns of Pompeii and Herculaneum under ash and volcanic rock, killing "
        "many of the people who had not fled. The writer Pliny the Younger watched the eruption from across "
        "the bay and later described it in two letters to the historian Tacitus; his uncle, Pliny the Elder, "
        "died while trying to rescue people by ship. The buried towns were largely forgotten until "
        "excavations began in the 18th century. Vesuvius is still active, and its most recent eruption was "
        "in 1944.",
        [
            ("Which towns did Vesuvius bury?", "Pompeii and Herculaneum", "Pompeii and Herculaneum"),
            ("Who described the eruption?", "Pliny the Younger", "The writer Pliny the Younger watched the eruption"),
        ],
    ),
    (
        ENCYCLOPEDIA,
        "Johannes Gutenberg was a goldsmith from Mainz, in what is now Germany, who developed a printing press "
        "with movable metal type around 1450. Each letter was cast as a separate piece of metal, so the same "
        "letters could be arranged into new pages again and again. He also developed an oil-based ink that "
        "stuck well to metal type. His most famous work is the Gutenberg Bible, printed in Mainz in the 1450s, "
        "of which about 180 copies were made. Fewer than fifty complete or partial copies survive today. "
        "Printing spread quickly across Europe, and books became far cheaper and more common than when they "
        "were copied by hand.",
        [
            ("Where was Gutenberg from?", "Mainz", "a goldsmith from Mainz"),
            ("How many copies of his Bible were made?", "about 180", "about 180 copies were made"),
        ],
    ),
    (
        ENCYCLOPEDIA,
        "The octopus is a sea animal with a soft body and eight arms lined with suckers. It belongs to a group "
        "of molluscs called cephalopods, which also includes squid and cuttlefish. An octopus has three "
        "hearts: two pump blood through the gills, and the third pumps it around the rest of the body. Its "
        "blood is blue, because it carries oxygen with a copper-based protein instead of the iron-based "
        "haemoglobin that humans use. Many octopuses can change the colour and texture of their skin in a "
        "fraction of a second to hide from predators, and when threatened they can squirt a cloud of dark "
        "ink and escape.",
        [
            ("How many hearts does an octopus have?", "three", "An octopus has three hearts"),
            ("Why is its blood blue?", "it carries oxygen with a copper-based protein",
             "it carries oxygen with a copper-based protein"),
        ],
    ),
    (
        ENCYCLOPEDIA,
        "The human heart is a muscular organ about the size of a closed fist that sits in the chest, slightly "
        "to the left. It has four chambers: two upper chambers called atria and two lower chambers called "
        "ventricles. The right side of the heart pumps blood to the lungs to collect oxygen, and the left side "
        "pumps the oxygen-rich blood to the rest of the body. An adult's heart beats about 100,000 times a "
        "day. In 1628 the English doctor William Harvey published a book showing that the heart pumps blood "
        "around the body in a circuit, overturning ideas that had been accepted since ancient times.",
        [
            ("How many chambers does the heart have?", "four", "It has four chambers"),
            ("Where does its right side pump blood?", "to the lungs", "pumps blood to the lungs to collect oxygen"),
        ],
    ),
    (
        ENCYCLOPEDIA,
        "Hummingbirds are small birds found only in the Americas. They are named after the humming sound of "
        "their wings, which in some species beat more than fifty times a second. Hummingbirds can hover in "
        "one place and even fly backwards, and they drink nectar from flowers with their long tongues. Their "
        "flight takes a great deal of energy, so many of them visit hundreds of flowers every day. Some, such "
        "as the ruby-throated hummingbird, fly across the Gulf of Mexico on their yearly migration. The "
        "smallest of them, the bee hummingbird of Cuba, is also the smallest bird in the world, measuring "
        "about five to six centimetres long.",
        [
            ("Where does the bee hummingbird live?", "Cuba", "the bee hummingbird of Cuba"),
            ("How long is it?", "about five to six centimetres", "about five to six centimetres long"),
        ],
    ),
    (
        LITERATURE,
        "The old lighthouse keeper, Mr. Abernathy, had lived alone on the rock for twenty years, and in all "
        "that time he had never once let the lamp go out. Each evening he climbed the hundred and twelve steps "
        "with a can of oil in one hand and a lantern in the other. One stormy night in November the boat that "
        "brought his supplies failed to arrive, and his oil ran low. He turned the wick down as far as he "
        "dared and sat beside the lamp until morning, adding the last of the oil a spoonful at a time. At "
        "dawn a fishing boat that had passed safely in the dark brought him bread, oil and a letter of thanks "
        "from the harbour master.",
        [
            ("How many steps did the keeper climb each evening?", "a hundred and twelve",
             "the hundred and twelve steps"),
            ("What failed to arrive one stormy night?", "the boat that brought his supplies",
             "the boat that brought his supplies failed to arrive"),
        ],
    ),
    (
        LITERATURE,
        "Eleanor had never seen the sea until the summer she turned sixteen, when her aunt invited her to stay "
        "in a grey stone house above the harbour of a small Cornish town. On the first morning she woke to the "
        "cries of gulls and ran down the steep lane in her nightgown, forgetting her shoes. The water was "
        "colder than she had imagined and a deeper green than any painting. Her aunt, who had followed her "
        "with a shawl, laughed and said that everyone who saw the sea for the first time did something "
        "foolish. That evening Eleanor wrote a long letter to her mother, begging to be allowed to stay until "
        "September.",
        [
            ("Who invited Eleanor to stay?", "her aunt", "her aunt invited her to stay"),
            ("What did she forget on the first morning?", "her shoes", "forgetting her shoes"),
        ],
    ),
    (
        LITERATURE,
        "Captain Morrow stood on the deck of the Albatross and watched the clouds darken in the west. He had "
        "sailed these waters for thirty years, and he knew the signs of a gale. He ordered the crew to take in "
        "the sails and to tie down everything on deck. The youngest sailor, a boy named Finn, was sent below "
        "to tell the cook to put out the stove. By midnight the waves were breaking over the rails, and the "
        "ship rolled so far that the lanterns swung against the ceiling. But the Albatross held together, and "
        "at dawn the sky cleared to show the coast of Ireland only a few miles away.",
        [
            ("What was the captain's ship called?", "the Albatross", "the deck of the Albatross"),
            ("What did they see at dawn?", "the coast of Ireland", "the coast of Ireland only a few miles away"),
        ],
    ),
    (
        LITERATURE,
        "Mr. Pemberton kept a small shop of clocks on a narrow street, and every clock in it told a different "
        "time. Customers often complained, but the old man only smiled and said that a clock which agreed with "
        "every other clock had nothing to say. One winter afternoon a girl came in carrying a broken pocket "
        "watch that had belonged to her grandfather. Mr. Pemberton opened it with a tiny screwdriver, found a "
        "bent spring, and worked on it by candlelight for three evenings. When she returned, the watch was "
        "ticking again, and he would take no money for it, asking only that she wind it every morning.",
        [
            ("What did the girl bring to the shop?", "a broken pocket watch", "a broken pocket watch"),
            ("What was wrong with it?", "a bent spring", "found a bent spring"),
        ],
    ),
    (
        LITERATURE,
        "The village of Little Haddon had one road, one church and one baker, and the baker was a widow named "
        "Martha Finch. She rose each morning at four to light her ovens, and by six the smell of warm bread "
        "drifted over every roof. When the river froze in the hard winter of that year and the carts from town "
        "could not get through, it was Martha who kept the village fed. She baked through the night with flour "
        "she had saved in her cellar and sent her two sons from door to door with loaves wrapped in cloth. In "
        "the spring the grateful villagers bought her a new copper kettle.",
        [
            ("What time did Martha rise each morning?", "at four", "She rose each morning at four"),
            ("What did the villagers give her in the spring?", "a new copper kettle", "a new copper kettle"),
        ],
    ),
    (
        LITERATURE,
        "The train was already moving when Thomas jumped aboard, his hat in one hand and a leather bag in the "
        "other. He found an empty seat beside an elderly gentleman who was reading a newspaper upside down. "
        "Thomas pretended not to notice, but after a while the gentleman lowered the paper and explained that "
        "he read it that way to stop strangers from talking to him. Both men laughed, and they talked all the "
        "way to London about chess, the weather and the price of coal. At the station the gentleman handed "
        "Thomas a card. It read simply: Arthur Vane, Bookseller, 14 Lamb Street.",
        [
            ("How was the gentleman reading his newspaper?", "upside down", "reading a newspaper upside down"),
            ("What was his trade?", "he was a bookseller", "Arthur Vane, Bookseller"),
        ],
    ),
    (
        LITERATURE,
        "Every night for a week the farmer's dog barked at the edge of the wood, and every morning another hen "
        "was missing. The farmer, a patient man named Hollis, sat up on the eighth night with a lantern hidden "
        "under a bucket. Near midnight he heard the soft rustle of leaves and saw two green eyes shining by the "
        "hen house. He lifted the bucket, and in the sudden light he found not a fox but a thin grey cat with "
        "three kittens behind her. Hollis did not have the heart to drive her away. Instead he gave her a bowl "
        "of milk each evening, and the hens were left in peace.",
        [
            ("Where did the dog bark every night?", "at the edge of the wood", "barked at the edge of the wood"),
            ("What did Hollis find by the hen house?", "a thin grey cat with three kittens",
             "a thin grey cat with three kittens"),
        ],
    ),
    (
        LITERATURE,
        "When the letter arrived, Clara read it twice before she could believe it. Her brother Daniel, who had "
        "gone to sea eleven years earlier and had not written since, was coming home. He would arrive on the "
        "first of May, the letter said, on a steamer from Lisbon. Clara spent the following weeks cleaning the "
        "spare room, mending the curtains and baking the ginger cake he had loved as a boy. On the morning of "
        "his arrival she stood at the harbour wall for three hours, watching every ship. When Daniel finally "
        "stepped onto the quay, he was thinner and browner than she remembered, but he knew her at once.",
        [
            ("How long had Daniel been away?", "eleven years", "gone to sea eleven years earlier"),
            ("What did Clara bake for him?", "ginger cake", "the ginger cake he had loved as a boy"),
        ],
    ),
    (
        EXAM,
        "Many students believe that staying up late to study the night before a test is the best way to get a "
        "good mark. However, scientists have found that sleep plays an important part in learning. While we "
        "sleep, the brain sorts the information we have taken in during the day and stores the most important "
        "parts in long-term memory. Students who sleep well after studying usually remember more than those "
        "who stay awake all night. Experts suggest that teenagers need about eight to ten hours of sleep each "
        "night. So the next time you have an exam, put your books away at a sensible hour and go to bed.",
        [
            ("What does the brain do while we sleep?", "sorts the information we have taken in during the day",
             "the brain sorts the information we have taken in during the day"),
            ("How much sleep do teenagers need?", "about eight to ten hours",
             "about eight to ten hours of sleep each night"),
        ],
    ),
    (
        EXAM,
        "Dear Grandpa, Thank you very much for the bicycle you sent me for my birthday. It is exactly the "
        "colour I wanted, and it is much faster than my old one. On Saturday I rode it to the park with my "
        "friend Jake, and we raced each other around the lake three times. I won twice! Mum says I must always "
        "wear my helmet, so I do, even though it messes up my hair. Next month our school is having a sports "
        "day, and I am going to enter the cycling race. I hope you can come and watch. Love, Emily",
        [
            ("What did Grandpa send Emily?", "a bicycle", "the bicycle you sent me for my birthday"),
            ("How many of the races did she win?", "two", "I won twice!"),
        ],
    ),
    (
        EXAM,
        "Recycling is one of the easiest ways for families to help the environment. When we recycle paper, "
        "fewer trees need to be cut down, and recycling aluminium cans saves most of the energy needed to make "
        "new ones from raw materials. Glass can be melted and made into new bottles again and again without "
        "losing quality. Yet a lot of rubbish that could be recycled still ends up in landfill sites. One "
        "reason is that people are not sure which bin to use. Many towns now print simple guides and stick "
        "them on their bins. If every family spent five minutes sorting its rubbish each day, the difference "
        "would be enormous.",
        [
            ("What can be made into new bottles again and again?", "glass",
             "Glass can be melted and made into new bottles"),
            ("Why does some recyclable rubbish end up in landfill?", "people are not sure which bin to use",
             "people are not sure which bin to use"),
        ],
    ),
    (
        EXAM,
        "Li Wei moved from a small village to a big city when he was fourteen. On his first day at his new "
        "school he felt lonely, because he did not know anyone and the other students spoke very fast. His "
        "teacher, Ms. Brown, noticed that he sat alone at lunch. She asked him to join the school's chess club, "
        "which met every Wednesday. Li had learned chess from his grandfather and soon won several games. The "
        "other members began to ask him for advice, and before long he had made many friends. At the end of "
        "the year, Li helped his club win second place in the city competition.",
        [
            ("When did the chess club meet?", "every Wednesday", "met every Wednesday"),
            ("Who taught Li to play?", "his grandfather", "learned chess from his grandfather"),
        ],
    ),
    (
        EXAM,
        "Do you know how to make your money go further? Experts say that the first step is to keep a record of "
        "everything you spend for one month. Many people are surprised to find how much they spend on small "
        "things such as snacks, drinks and mobile phone apps. The second step is to make a budget, deciding "
        "in advance how much you will spend on each kind of thing. Finally, try to save a little every week, "
        "even if it is only a small amount. A student who saves five dollars a week will have 260 dollars at "
        "the end of a year, enough for a good present or a short trip.",
        [
            ("What is the first step?", "keep a record of everything you spend for one month",
             "keep a record of everything you spend for one month"),
            ("How much will a student who saves five dollars a week have after a year?", "260 dollars",
             "will have 260 dollars at the end of a year"),
        ],
    ),
    (
        EXAM,
        "Maria had always been afraid of speaking in front of other people. When her teacher asked each "
        "student to give a five-minute talk about a hobby, she could not sleep for two nights. Her older "
        "brother gave her some advice. He told her to choose something she loved, to practise in front of a "
        "mirror, and to look at a friendly face in the audience. Maria decided to talk about her collection of "
        "old stamps, which she had started when she was seven. On the day of the talk her hands shook at "
        "first, but soon she forgot her fear. Her classmates clapped loudly, and two of them asked to see her "
        "stamps.",
        [
            ("What did Maria talk about?", "her collection of old stamps", "her collection of old stamps"),
            ("Who gave her advice?", "her older brother", "Her older brother gave her some advice"),
        ],
    ),
    (
        EXAM,
        "Many people think that a long walk is only for the weekend, but walking every day is one of the best "
        "forms of exercise. It is free, needs no special equipment, and can be done by people of almost any "
        "age. Doctors say that walking briskly for thirty minutes a day can strengthen the heart, help to "
        "control weight and improve mood. It is also a good way to get to know your neighbourhood and meet "
        "people. If you find it hard to start, try walking to school or work instead of taking the bus, or use "
        "the stairs instead of the lift. Small changes like these soon become habits.",
        [
            ("How long should you walk briskly each day?", "thirty minutes", "walking briskly for thirty minutes a day"),
            ("What can you use instead of the lift?", "the stairs", "use the stairs instead of the lift"),
        ],
    ),
    (
        EXAM,
        "When Oliver's family moved to a farm, he had to learn many new jobs. Every morning before school he "
        "fed the chickens and collected their eggs. At first he dropped more eggs than he saved, and the hens "
        "pecked at his fingers. His neighbour, an old farmer named Mr. Hughes, showed him how to move slowly "
        "and speak softly so that the birds would not be frightened. After a few weeks Oliver could collect "
        "two dozen eggs without breaking a single one. He began selling the extra eggs to the neighbours, and "
        "by the end of the summer he had earned enough money to buy a new football.",
        [
            ("Who showed Oliver how to handle the hens?", "Mr. Hughes", "an old farmer named Mr. Hughes"),
            ("What did he buy with his money?", "a new football", "enough money to buy a new football"),
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


def write(data: Path = DATA) -> list[Path]:
    """The evaluation stories and the calibration split, written into `data`."""
    if not all(len(turns) >= 5 for _, _, turns in STORIES) or not all(len(turns) == 2 for _, _, turns in CALIBRATION):
        raise ValueError("evaluation stories have five turns or more, calibration stories two")
    stories = [" ".join(story.split()) for _, story, _ in STORIES + CALIBRATION]
    if len(set(stories)) != len(stories):
        raise ValueError("a story is in both sets, or twice in one")
    files = {"coqa.jsonl": STORIES, "coqa.calibration.jsonl": CALIBRATION}
    for name, entries in files.items():
        write_jsonl(data / name, (record(i, *story) for i, story in enumerate(entries)))
    return [data / name for name in files]


if __name__ == "__main__":
    write()
    for name, stories in (("evaluation", STORIES), ("calibration", CALIBRATION)):
        print(f"wrote {len(stories)} {name} stories, {sum(len(t) for _, _, t in stories)} turns, to {DATA}")
