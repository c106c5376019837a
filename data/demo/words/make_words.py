#!/usr/bin/env python3
"""Writes the `make demo` task, data/demo/words/{train,eval}.jsonl: find the colour.

Each prompt lists three words — one colour and two other words (animals, fruit, furniture) —
in a random order and asks which one is a colour; the answer is that word:

    {"messages": [{"role": "user", "content": "Which word is a colour? dog red pear"},
                  {"role": "assistant", "content": "red"}]}

Every word is a single Llama 3 token (with its leading space). The rule is learnable by a
small random Llama with LoRA: attend to the word whose embedding is a colour's and map it to
the answer. 400 training prompts, 100 held-out prompts: every held-out prompt is a new
combination (word set and order) of words seen in training; none occurs in train.jsonl.
Deterministic; stdlib only: /usr/bin/python3 data/demo/words/make_words.py
"""
import json
import os
import random

COLOURS = ["red", "blue", "green", "yellow"]
OTHERS = ["dog", "cat", "horse", "cow", "apple", "pear", "plum", "grape", "table", "chair", "door", "lamp"]
N_TRAIN, N_EVAL = 400, 100


def main():
    rng = random.Random(3)
    seen, recs = set(), []
    while len(recs) < N_TRAIN + N_EVAL:
        colour = rng.choice(COLOURS)
        words = [colour] + rng.sample(OTHERS, 2)
        rng.shuffle(words)
        prompt = "Which word is a colour? " + " ".join(words)
        if prompt in seen:
            continue
        seen.add(prompt)
        recs.append((prompt, colour))
    out = os.path.dirname(os.path.abspath(__file__))
    for name, part in (("train", recs[:N_TRAIN]), ("eval", recs[N_TRAIN:])):
        with open(os.path.join(out, name + ".jsonl"), "w") as f:
            for prompt, answer in part:
                f.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                                 {"role": "assistant", "content": answer}]}) + "\n")


main()
