"""Spoken-length utterances (5–25 words) for benchmarks and smoke tests.

Written for emostream (not taken from any dataset): the kind of sentence a speech-to-text
front end hands the classifier, across all 7 emotions, with some spoken fillers.
"""

from __future__ import annotations

UTTERANCES: tuple[str, ...] = (
    "I can't believe you did this to me again after everything we talked about last week",
    "Okay so the train is delayed by twenty minutes, we'll just have to wait",
    "This is honestly the best news I've heard all year, thank you so much",
    "Please stop yelling at me, I'm doing the best I can here",
    "Wait, you're telling me she actually got the job? No way",
    "I miss my grandmother so much, the house feels empty without her",
    "That smell in the fridge is absolutely disgusting, what did you leave in there",
    "I'm really nervous about the surgery tomorrow morning",
    "Can you send me the report before the meeting at three",
    "Um, I think I left my keys at the office, let me check",
    "You promised you'd be here at six and you didn't even call",
    "We won the game in the last second, I'm still shaking",
    "It's fine, I guess, I just wish someone had told me earlier",
    "Oh wow, I did not expect the whole team to show up for my birthday",
    "The way he treats the waiters is gross, I can't watch it",
    "There's somebody walking around outside the window and I'm scared",
    "I'm so proud of you for finishing the marathon",
    "Honestly I'm exhausted and nothing I do seems to matter anymore",
    "Let's meet at the usual place on Friday",
    "Why would anyone think that's a good idea, it's ridiculous",
    "Thanks for the ride, I really appreciate it",
    "I heard a loud crash downstairs and now the lights are out",
    "Is it weird that I actually enjoyed the dentist today",
    "My dog passed away this morning and I don't know what to do",
    "Turn left at the next light and then it's the second building on the right",
    "Stop touching my stuff, I've told you a hundred times already",
    "That was hilarious, I haven't laughed like that in ages",
    "What do you mean the flight was cancelled, we're supposed to be there tonight",
    "Ugh, someone spat gum on the seat and I sat right on it",
    "I don't feel safe walking home alone this late",
    "We should probably order more paper for the printer",
    "I'm sorry I missed your call, I was stuck in traffic the whole afternoon and my phone died",
    "You know what, I'm done, I'm not covering for you anymore",
    "So the results came back and everything looks completely normal, what a relief",
    "I really thought we'd make it this time but we lost again",
    "Hold on, did you just say the concert is tonight and not tomorrow",
    "The soup tastes like dish soap, honestly it's revolting",
    "My heart is racing, I think someone followed me from the station",
    "Can you remind me what time the kids get out of school on Wednesdays",
    "I got the apartment, I can't stop smiling",
    "Get out of my room, now",
    "Oh no, not this again",
    "This is the best day ever",
    "I'm so sorry for your loss",
    "Ew, that is really gross",
    "And then, out of nowhere, the whole ceiling just came down in the kitchen while we were having dinner with my parents",
    "I've been waiting on hold for two hours and every time someone picks up they transfer me back to the same menu",
    "Honestly I just feel so alone lately, like nobody would even notice if I stopped showing up to things at all",
    "We just found out we're having twins and I honestly don't know whether to laugh or cry or call my mom right now",
    "So the plan for tomorrow is pick up the rental at nine, drive to the coast, and check in before four",
)


# Speech-transcript style utterances from issue #11 ("the emotion model hears speech"): a question,
# disfluent small talk, plain anger, fear without an emotion word, sarcasm. Shown in the model card.
SPOKEN_EXAMPLES: tuple[str, ...] = (
    "Are you coming to the party tonight?",
    "um so yeah i think the meeting went okay i guess",
    "this makes me furious",
    "there's a spider on my arm get it off",
    "oh great another monday just what i needed",
)

# Twenty everyday spoken lines written for the model card (issue #11) before any model output was
# looked at, and never used for training, thresholds or any other choice: questions, small talk,
# fillers, in lowercase unpunctuated speech-to-text style. The card shows what the model says.
EVERYDAY_LINES: tuple[str, ...] = (
    "what time does the train leave",
    "can you pass me the salt please",
    "um so yeah",
    "did you remember to feed the cat",
    "hey how's it going",
    "i'm just gonna grab a coffee do you want one",
    "uh where did i put my keys",
    "the weather's been pretty nice lately huh",
    "okay sounds good see you tomorrow",
    "like i don't know maybe we could try the other place",
    "is this seat taken",
    "i can't believe we actually won the game",
    "my grandma passed away last night",
    "why would you do that to me",
    "that smell is making me sick",
    "wait what you're moving to canada",
    "i'm so scared about the test results",
    "you know what let's just order pizza",
    "hmm i'll have to check my calendar",
    "thanks so much that really means a lot",
)
