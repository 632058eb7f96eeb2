"""A built-in corpus of spoken-style utterances across the seven classes, for simulators and demos.

Written for emostream (not taken from any data set): per class, templates with slots that
expand into thousands of distinct sentences of 3–25 words, the way people talk near a
microphone at home. Deterministic for a given seed. No I/O.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from emostream.events import Transcript, format_ts, new_utterance_id

CLASSES = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")

_SLOTS: dict[str, tuple[str, ...]] = {
    "person": ("my brother", "the landlord", "your mother", "the new manager", "our neighbour", "my sister",
               "the plumber", "Tom", "the kids", "my boss", "the delivery guy", "Grandpa", "the teacher", "Sarah"),
    "thing": ("the dishwasher", "the car", "the heating", "my phone", "the printer", "the wifi", "the washing machine",
              "the laptop", "the fridge", "the front door lock", "the TV", "the garage door"),
    "place": ("the station", "the office", "the supermarket", "the hospital", "school", "the airport", "the gym",
              "the bank", "the park", "work", "the post office", "the dentist"),
    "time": ("this morning", "last night", "yesterday", "an hour ago", "on Monday", "again today", "twice this week",
             "just now", "at lunch", "over the weekend"),
    "food": ("the milk", "the chicken", "that soup", "the leftovers", "the cheese", "the fish", "the salad",
             "the yoghurt", "that sandwich", "the rice"),
    "event": ("the exam", "the interview", "the results", "the surgery", "the flight", "the meeting", "the trip",
              "the wedding", "the test", "the concert"),
    "good": ("got the job", "passed the exam", "won the match", "finished the marathon", "got engaged",
             "sold the house", "got the tickets", "had the baby", "fixed the roof", "got promoted"),
    "chore": ("take out the bins", "do the dishes", "walk the dog", "water the plants", "pick up the kids",
              "call the bank", "pay the electricity bill", "book the dentist", "buy more coffee", "charge the car"),
}

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "anger": (
        "I am so sick of {person} never listening to me",
        "Why does {thing} break every single time I need it",
        "I told you three times to {chore} and you still haven't done it",
        "This is ridiculous, {thing} stopped working {time}",
        "Stop it right now, I am really angry with you",
        "{person} cancelled on me {time} and I am furious",
        "Don't you dare talk to me like that again",
        "I waited at {place} for two hours and nobody showed up",
        "Who left {thing} on all night, that drives me mad",
        "I can't stand how {person} treats everyone",
        "Enough, I have had it with {thing}",
        "They charged me twice at {place} and now they won't fix it",
        "You promised you would {chore} and you lied to me",
        "Unbelievable, {person} took my parking spot {time}",
        "Get out of my room and leave me alone",
        "I am absolutely fuming about what happened at {place}",
    ),
    "disgust": (
        "Ugh, {food} smells absolutely disgusting",
        "That is revolting, who left {food} out {time}",
        "I think {food} has gone off, it's gross",
        "Eww, there's hair in {food}",
        "The toilets at {place} were filthy",
        "I can't even look at {food}, it makes me feel sick",
        "Yuck, something is growing behind {thing}",
        "What {person} said {time} was just vile",
        "That's nasty, the dog rolled in something again",
        "The bins outside stink, it's horrible",
        "I feel sick just thinking about {food}",
        "Gross, the floor at {place} was sticky everywhere",
        "That sandwich tastes like old socks",
        "How can anyone eat {food}, it's disgusting",
    ),
    "fear": (
        "I'm really scared about {event} tomorrow",
        "Did you hear that noise downstairs",
        "What if {person} doesn't come back tonight",
        "I'm terrified something will go wrong with {event}",
        "Someone is trying to open the front door",
        "I'm nervous, {person} still hasn't called",
        "Please don't leave me alone in the dark",
        "My heart is pounding, I think someone is outside",
        "I'm afraid {thing} is going to catch fire",
        "I'm worried sick about {event}",
        "There's smoke coming from {thing}, what do we do",
        "I'm frightened of driving to {place} in this storm",
        "What if I fail {event} and lose everything",
        "I keep having nightmares about {event}",
    ),
    "joy": (
        "Yes, I {good}",
        "This is the best day ever, {person} {good}",
        "I'm so happy, we finally {good}",
        "That was wonderful, thank you so much",
        "I love this song, turn it up",
        "We had such a lovely time at {place} {time}",
        "Guess what, {person} {good} and we are celebrating tonight",
        "I'm thrilled, {event} went perfectly",
        "Dinner was delicious, you are an amazing cook",
        "Look at the sunset, it's beautiful",
        "I can't stop smiling, {event} was fantastic",
        "Finally the weekend, I feel great",
        "Hooray, {thing} works again",
        "I am so proud of you, you did it",
    ),
    "sadness": (
        "I miss {person} so much",
        "I feel really lonely tonight",
        "{person} is moving away and I'm heartbroken",
        "I didn't get the job, I'm so disappointed",
        "Everything feels pointless lately",
        "I've been crying since {time}",
        "Our old dog passed away {time}",
        "Nobody remembered my birthday",
        "I'm sad that {event} was cancelled",
        "It's been a really hard week and I'm exhausted",
        "I wish {person} were still here with us",
        "I lost my wallet at {place} and I just want to cry",
        "I feel like I let everyone down",
        "The house is so quiet without {person}",
    ),
    "surprise": (
        "Wow, I didn't expect that at all",
        "No way, {person} {good}",
        "Really? {event} is today",
        "Oh my god, what happened to {thing}",
        "You're kidding, {person} is here already",
        "Wait, since when do we have a cat",
        "What, the flight was moved to tonight",
        "I can't believe it, {thing} fixed itself",
        "Whoa, that was fast",
        "Seriously, {person} said yes",
        "Is that snow outside, in May",
        "Oh, I had no idea you could sing",
        "Huh, {place} is closed {time}",
        "Wow, who bought all these flowers",
    ),
    "neutral": (
        "Can you {chore} later",
        "What time is {event} tomorrow",
        "I'm going to {place} {time}",
        "Turn the lights off in the kitchen please",
        "Set a timer for twenty minutes",
        "The meeting starts at ten",
        "Did {person} call {time}",
        "Remind me to {chore} after lunch",
        "What's the weather like this afternoon",
        "Please add milk and bread to the shopping list",
        "I'll be home around six",
        "Play the news on the radio",
        "{person} will pick up the parcel from {place}",
        "We need to {chore} before Friday",
        "Where did I put {thing} manual",
        "The bus leaves at quarter past eight",
    ),
}

_QUESTION_WORDS = {"What", "Why", "Who", "Where", "Did", "Can", "Is", "Really?", "Seriously,"}
_NAMES = {"Tom", "Grandpa", "Sarah"}
_OPENERS = ("", "", "", "", "Honestly, ", "Oh, ", "Well, ", "You know, ", "Hey, ", "Listen, ")


def _expand(template: str, rng: random.Random) -> str:
    out = template
    for slot, values in _SLOTS.items():
        while "{" + slot + "}" in out:
            out = out.replace("{" + slot + "}", rng.choice(values), 1)
    return out


def utterance(rng: random.Random, label: str | None = None) -> tuple[str, str]:
    """One (text, intended class) pair; the class is drawn uniformly when ``label`` is None."""
    cls = label or rng.choice(CLASSES)
    text = _expand(rng.choice(_TEMPLATES[cls]), rng)
    question = text.split(" ", 1)[0] in _QUESTION_WORDS
    opener = rng.choice(_OPENERS)
    if opener:
        keep_case = text.startswith(("I ", "I'")) or text[0] == "{" or text.split(" ", 1)[0] in _NAMES
        text = opener + (text if keep_case else text[0].lower() + text[1:])
    return text + ("?" if question else rng.choice(".!.")), cls


def utterances(n: int, seed: int = 0, label: str | None = None) -> list[tuple[str, str]]:
    """``n`` (text, class) pairs, reproducible for a seed."""
    rng = random.Random(seed)
    return [utterance(rng, label) for _ in range(n)]


def distinct_utterances(label: str | None = None, limit: int = 100_000, seed: int = 0) -> set[str]:
    """A sample of distinct sentences the corpus produces (for sizing and tests)."""
    rng = random.Random(seed)
    return {utterance(rng, label)[0] for _ in range(limit)}


def realistic_transcripts(devices: list[str], n: int, seed: int = 0, *, engine: str = "simulator",
                          now: float | None = None) -> Iterator[Transcript]:
    """``n`` Transcript events spread round-robin over ``devices``, with timing a microphone would give.

    Each utterance lasts about 0.35 s per word (spoken pace), ends ``now`` and gets a fresh UUIDv7.
    """
    rng = random.Random(seed)
    for i in range(n):
        text, _cls = utterance(rng)
        end = now if now is not None else time.time()
        duration = 0.35 * len(text.split()) + rng.uniform(0.1, 0.5)
        yield Transcript(
            device_id=devices[i % len(devices)],
            utterance_id=new_utterance_id(),
            text=text,
            confidence=round(rng.uniform(0.6, 0.98), 3),
            started_at=format_ts(end - duration),
            ended_at=format_ts(end),
            stt_engine=engine,
        )
