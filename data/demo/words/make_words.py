#!/usr/bin/env python3
"""Writes the demo task (data/demo/words/{train,eval}.jsonl): pick the word of a category.

Each prompt lists one word of each of four categories in a random order and asks for the
word of one category; the answer is that word. Every word is one Llama 3 token (with its
leading space), so the rule is learnable by a tiny model: find the category asked, then the
listed word that belongs to it. The held-out prompts are new combinations (word set, order,
category asked) of words seen in training; none of them occurs in train.jsonl.
Deterministic (seeded); stdlib only: /usr/bin/python3 data/demo/words/make_words.py
"""
import json, os, random, sys

CATS = {
    "colour": ["red", "blue", "green", "yellow", "purple", "orange", "pink", "brown"],
    "animal": ["dog", "cat", "horse", "cow", "sheep", "lion", "bear", "fox"],
    "fruit": ["apple", "pear", "plum", "grape", "lemon", "peach", "mango", "cherry"],
    "furniture": ["table", "chair", "door", "lamp", "bed", "desk", "sofa", "shelf"],
}
N_TRAIN = int(sys.argv[1]) if len(sys.argv) > 1 else 400
N_EVAL = int(sys.argv[2]) if len(sys.argv) > 2 else 100


def record(rng):
    cats = list(CATS)
    words = {c: rng.choice(CATS[c]) for c in cats}
    order = cats[:]
    rng.shuffle(order)
    ask = rng.choice(cats)
    prompt = f"Which word is a {ask}? " + ", ".join(words[c] for c in order)
    return prompt, words[ask]


def main():
    rng = random.Random(15)
    out = os.path.dirname(os.path.abspath(__file__))
    seen, recs = set(), []
    while len(recs) < N_TRAIN + N_EVAL:
        p, a = record(rng)
        if p in seen:
            continue
        seen.add(p)
        recs.append((p, a))
    for name, part in (("train", recs[:N_TRAIN]), ("eval", recs[N_TRAIN:])):
        with open(os.path.join(out, name + ".jsonl"), "w") as f:
            for p, a in part:
                f.write(json.dumps({"messages": [{"role": "user", "content": p},
                                                 {"role": "assistant", "content": a}]}) + "\n")


main()
