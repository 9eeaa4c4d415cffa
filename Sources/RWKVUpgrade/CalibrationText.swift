import RWKVText

/// The text `rwkv-upgrade` calibrates `preserve` with when no `--calibrate FILE` is given.
///
/// Written for this project and released with it (no third-party text): English prose of
/// several kinds (narrative, dialogue, explanation, instructions, a letter, a list, figures and
/// dates), plain ASCII so that every byte-level vocabulary reads it as ordinary text. 9,351
/// bytes: 4096 of them fill the default fit batch of a byte-level model, and the World
/// tokenizer makes 2,227 tokens of it. docs/upgrade.md measures what it buys.
enum BuiltInCalibrationText {
    static let name = "built-in English text"

    /// The text's tokens for a model with `vocabularySize` rows, nil when it has no tokenizer
    /// for it (neither bytes nor World) or its byte vocabulary is too small for ASCII.
    static func tokens(vocabularySize: Int) -> [Int]? {
        try? TextTokenizer.forModel(vocabularySize: vocabularySize).encode(Array(english.utf8), path: name)
    }

    static let english = #"""
The bus from the coast was forty minutes late, and by the time it stopped in the square the
rain had settled into the steady, patient kind that goes on all afternoon. Nora stepped down
with her suitcase, looked once at the clock above the post office, and decided that the hotel
could wait. There was a cafe on the corner with steamed windows and a chalkboard that promised
soup, bread and "the best coffee between here and the mountains," which seemed like a claim
worth testing.

Inside, an old man was reading a newspaper folded into quarters, and a girl of about ten was
doing sums at the counter while her mother dried cups. Nora ordered the soup. It was lentil,
thick and peppery, and it came with a slice of brown bread still warm from the oven.

"You're here for the survey," the woman said, not quite a question.

"I am. How did you know?"

"Nobody comes in November for the view. And you have the look of someone who measures
things." She set down a cup. "Your people were here last spring, too. They counted the birds
on the marsh and went away again. We never heard what they found."

"I'll make sure you hear this time," Nora said, and meant it.

The survey itself was simple enough on paper. Every morning for three weeks, she would walk
the same route along the river, stopping at twelve marked posts. At each post she would record
the water level, the temperature of the air and of the water, the speed of the current at the
surface, and every bird she could see or hear in five minutes of standing still. The numbers
would go into a notebook, and the notebook would go, once a week, into a spreadsheet that
someone in the city would compare with the twenty previous years.

What the paper did not say was how cold the wind would be at half past six, or how the fog
lay in the low fields like milk in a saucer, or how a heron lifting off from the reeds would
make her forget, for a second, which number she was about to write down.

On the fourth day the river rose. It had rained in the hills all night, and by morning the
water at the third post was sixty centimetres higher than the day before and the colour of
strong tea. She measured it twice to be sure. At the seventh post the path was under water,
so she climbed the bank and walked along the edge of a ploughed field instead, her boots
growing heavier with every step. A farmer on a tractor raised one hand from the wheel as she
passed. She raised hers back.

---

How a lock works

A canal lock is a way of moving a boat between two stretches of water at different heights.
It is a chamber with a gate at each end. To go up, the boat enters the chamber from the lower
side and the lower gate is closed behind it. Then small openings, called paddles, are opened
in the upper gate, and water flows in from the higher level. As the chamber fills, the boat
rises with it. When the water inside is level with the water outside, the pressure on both
sides of the upper gate is the same, and the gate can be pushed open with little effort. The
boat moves out, and the journey continues.

Going down is the same process in reverse: the chamber is filled, the boat enters from above,
the upper gate is closed, and the lower paddles are opened to let the water out. No pump is
needed in either direction. The energy comes from the water itself, which is always trying
to run downhill. The only cost is the water that passes from the upper level to the lower one
each time the lock is used, which is why canals need reservoirs or rivers to feed their
highest sections, especially in dry summers.

Some locks are built in flights, one after another up a hillside, so that the top gate of one
is the bottom gate of the next. A long flight can take a boat more than an hour, and it is
usual for the crew to walk alongside, working the gates while the helmsman holds the boat
steady in the middle of the chamber.

---

A recipe for a plain loaf

You will need 500 grams of strong white flour, 10 grams of salt, 7 grams of dried yeast, 2
tablespoons of olive oil and about 320 millilitres of warm water.

1. Mix the flour, salt and yeast in a large bowl. Keep the salt and the yeast apart at first,
   on opposite sides of the bowl, because salt touching yeast directly can slow it down.
2. Make a well in the middle, pour in the oil and most of the water, and stir with your hand
   or a wooden spoon until a rough dough forms. Add the rest of the water a little at a time
   if there is dry flour left in the bottom of the bowl.
3. Turn the dough out onto a lightly floured surface and knead it for ten minutes, until it is
   smooth and springs back when you press it with a finger.
4. Put it back in the bowl, cover it with a clean cloth, and leave it somewhere warm for about
   an hour, or until it has doubled in size.
5. Knock it back, shape it into a loaf, and put it in an oiled tin. Leave it to rise for
   another thirty to forty minutes while the oven heats to 220 degrees.
6. Bake for 30 minutes. The loaf is done when it sounds hollow if you tap it underneath.
   Let it cool on a rack before you cut it, however hard that is.

---

Dear Tom,

Thank you for your letter, which arrived on Tuesday and was read aloud at breakfast, twice,
because your grandmother wanted to hear the part about the goat again. We are all well here.
The apple harvest was the best in years; we picked on three Saturdays in a row and still the
trees were full. Your uncle built a new shelf in the cellar to hold the boxes, and then had to
build a second one when the first was full by the end of September.

The village has been busy. The bridge over the stream was finally repaired in August, after
only four years of everyone saying it would be done next month. There was a small ceremony,
and the mayor cut a ribbon, and then it started to rain, so everybody went to the hall and ate
the sandwiches that had been meant for outside. The school has a new teacher, a young woman
from the city who plays the violin and has already started an orchestra of eleven children,
six of whom play the recorder.

Write again when you can, and tell us whether you will be home for the winter. Your room is
ready, and the stove in it finally draws properly.

With love from all of us,
Margaret

---

Notes from a lecture on measurement

Every measurement has three parts: a number, a unit, and an uncertainty. The number alone
means nothing; "twelve" is not a length until we know whether it is twelve millimetres or
twelve kilometres. The unit alone is not a measurement either. And the uncertainty, which is
the part most often left out, tells the reader how much to trust the other two.

Consider a simple example. A student measures the length of a table with a tape measure and
writes down 1.52 metres. Another student measures the same table with the same tape and writes
1.53 metres. Neither is wrong. The tape is marked in millimetres, but the ends of the table are
slightly rounded, the tape sags a little in the middle, and each student held it a little
differently. If we asked ten students, we might get values between 1.51 and 1.54, clustered
around 1.525. The honest report is then something like "1.525 metres, plus or minus 0.01,"
and the plus or minus is not an admission of failure but a piece of information.

The same idea applies everywhere. When a weather forecast says there is a seventy percent
chance of rain, it is reporting an uncertainty. When a doctor says a child is in the top
quarter for height, she is placing one measurement within the spread of many. When two
experiments disagree, the first question is whether they disagree by more than their
uncertainties allow; if they do not, there may be nothing to explain at all.

A good notebook therefore records not just the results but how they were obtained: the
instrument, the date and time, the conditions, and anything that went wrong. Years later,
when someone wants to compare a new measurement with an old one, those details are often the
only way to know whether a difference is real.

---

Things to check before a long walk in the hills:

- the weather forecast for the whole day, not only the morning;
- the time of sunset, and how long the route will take at a steady pace;
- a map of the area, and a compass, even if you also carry a phone;
- water, at least a litre and a half, and something to eat;
- a warm layer and a waterproof jacket, whatever the sky looks like at the start;
- a small first aid kit, a whistle and a torch;
- and someone at home who knows where you are going and when you expect to be back.

---

In the evening the rain stopped at last. Nora sat by the window of her room at the hotel and
copied the day's numbers from the damp notebook into a clean one, checking each line twice.
Water level at post three: 1.84 metres. Air temperature: 6.5 degrees. Water temperature: 7.1
degrees. Current: 0.9 metres per second, faster than any day so far. Birds: two herons, a
flock of about forty lapwings, one kingfisher, blue and sudden, gone before she could be
certain, and then certain after all when it came back.

Across the square the cafe was closing. The woman came out to pull down the shutter, saw the
light in the window above, and lifted her hand. Nora lifted hers, and then turned back to the
table, where the numbers were waiting, patient as the river, to be put in their proper order.
"""#
}
