"""The shipped prompt set: seeded, varied user prompts for self-distillation (no network needed).

Templates with random fills over eleven kinds of request (math word problems, code, chat,
summarisation, rewriting, lists, explanations, creative writing, email, reasoning, conversion).
The same (split, seed, n) always gives the same prompts on every machine (``random.Random``
with a str seed is fixed by Python). The held-out split is drawn from its own stream and never
contains a train prompt's exact text, so held-out tau is measured on prompts training never saw
(same distribution of tasks, different fills).

    python -m orthrus_sglang.train.prompt_set --out prompts/   # writes train.jsonl + heldout.jsonl
"""

from __future__ import annotations

import argparse
import functools
import json
import random
from pathlib import Path

SPLITS = ("train", "heldout")
DEFAULT_NUM = {"train": 20000, "heldout": 500}

NAMES = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jamal", "Kira", "Liam", "Maya",
         "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wen", "Yusuf", "Zoe", "Mr. Lopez",
         "Ms. Chen", "Dr. Patel", "Aunt Mia", "Coach Reed"]
ITEMS = [("apple", "apples"), ("pencil", "pencils"), ("book", "books"), ("cookie", "cookies"), ("marble", "marbles"),
         ("sticker", "stickers"), ("egg", "eggs"), ("ticket", "tickets"), ("shell", "shells"), ("card", "cards"),
         ("cupcake", "cupcakes"), ("flower", "flowers"), ("toy car", "toy cars"), ("notebook", "notebooks"),
         ("orange", "oranges"), ("balloon", "balloons"), ("stamp", "stamps"), ("candle", "candles")]
PLACES = ["the market", "school", "the library", "the park", "a bakery", "the zoo", "a bookstore", "the beach",
          "a farm", "the museum", "a garden center", "the gym"]
TOPICS = ["photosynthesis", "the water cycle", "black holes", "inflation", "machine learning", "the immune system",
          "plate tectonics", "climate change", "the French Revolution", "blockchains", "vaccines", "gravity",
          "supply and demand", "the internet", "DNA", "renewable energy", "the Roman Empire", "volcanoes",
          "electric cars", "sleep", "compound interest", "the stock market", "recycling", "bees", "the Moon",
          "antibiotics", "democracy", "rainbows", "earthquakes", "coffee", "the printing press", "memory",
          "meditation", "cloud computing", "solar panels", "the human heart", "tides", "coral reefs", "jazz",
          "chess", "the Olympic Games", "nutrition", "public speaking", "time management", "encryption"]
AUDIENCES = ["a five-year-old", "a high-school student", "a busy manager", "a beginner", "my grandmother",
             "a software engineer", "a tourist", "someone who has never heard of it"]
LANGUAGES = ["Python", "JavaScript", "C", "Go", "Rust", "Java", "TypeScript", "Bash", "SQL", "C++"]
CODE_TASKS = ["reverses a string", "checks whether a number is prime", "returns the n-th Fibonacci number",
              "counts the vowels in a string", "finds the largest element of a list", "removes duplicates from a list",
              "checks whether a string is a palindrome", "computes the factorial of n",
              "merges two sorted lists into one sorted list", "converts Celsius to Fahrenheit",
              "returns the sum of the digits of an integer", "finds the second smallest number in a list",
              "counts how many times each word appears in a sentence", "flattens a nested list",
              "checks whether two strings are anagrams", "computes the greatest common divisor of two numbers",
              "returns all even numbers from a list", "capitalizes the first letter of every word",
              "implements binary search on a sorted list", "rotates a list by k positions",
              "validates an email address with a simple rule", "computes the average of a list of numbers",
              "transposes a matrix", "converts a decimal number to binary", "finds the longest word in a sentence",
              "implements a stack with push and pop", "reads a file and counts its lines",
              "returns the intersection of two lists", "checks whether a year is a leap year",
              "generates the first n prime numbers"]
CODE_SNIPPETS = ["for i in range(10):\n    print(i * i)", "x = [1, 2, 3]\ny = x\ny.append(4)\nprint(x)",
                 "def f(n):\n    return n if n < 2 else f(n - 1) + f(n - 2)",
                 "s = 'hello'\nprint(s[::-1])", "nums = [3, 1, 2]\nnums.sort()\nprint(nums[0])",
                 "total = 0\nfor n in range(1, 6):\n    total += n\nprint(total)",
                 "words = 'a b a c'.split()\nprint({w: words.count(w) for w in words})",
                 "def add(a, b=[]):\n    b.append(a)\n    return b", "print(len(set([1, 1, 2, 3, 3])))",
                 "i = 0\nwhile i < 3:\n    i += 1\nprint(i)"]
BUGGY = ["def average(xs):\n    return sum(xs) / len(xs) + 1", "def is_even(n):\n    return n % 2 == 1",
         "def last(xs):\n    return xs[len(xs)]", "def square_all(xs):\n    for x in xs:\n        x = x * x\n    return xs",
         "def max_of(a, b):\n    if a > b:\n        return b\n    return a", "def greet(name):\n    print('Hello, ' + nam)"]
SUBJECTS = ["the city council", "a small startup", "the local library", "a group of students", "our neighbors",
            "the museum", "a team of scientists", "the school board", "a farmer", "the hiking club"]
ACTIONS = ["announced a new plan to reduce traffic", "opened a community garden", "started a recycling program",
           "launched a free coding class", "discovered a new species of frog", "raised money for a new playground",
           "extended its opening hours", "published a report on water quality", "organized a weekend festival",
           "switched to solar power"]
DETAILS = ["The project will take about {n} months.", "More than {n} people attended the first meeting.",
           "The cost is estimated at {n} thousand dollars.", "Volunteers will work on weekends.",
           "Critics say the plan is too expensive.", "Supporters believe it will help young families.",
           "A survey found that most residents agree.", "The idea came from a student competition.",
           "Officials will review the results next year.", "Local businesses have offered to help.",
           "It is the first program of its kind in the region.", "Some details are still being discussed."]
SENTENCES = ["i dont think we can finish the report by friday", "the meeting got moved to tomorrow morning",
             "can u send me the files asap", "this product is really good and i like it a lot",
             "we was going to the store but it was closed", "their going to announce the winner soon",
             "the results of the test was better then expected", "me and him are working on the project",
             "thanks for you help yesterday it was great", "the weather is bad so the game is canceled",
             "please let me know if you has any questions", "i cant come to the party because im sick",
             "the new app is confusing and nobody know how to use it", "we need more time to test the software",
             "he dont like the food at the new restaurant", "our team win the game last night",
             "the price are too high for most customers", "i will call you back when i am free",
             "your order has been shipped and will arrive soon", "the printer is broken again",
             "she have been working here for five years", "lets meet at the cafe near the station"]
STYLES = ["more formal", "more polite", "shorter", "more friendly", "grammatically correct", "more professional"]
THINGS = ["a birthday party", "a rainy weekend", "a science fair project", "a small vegetable garden",
          "a road trip", "learning a new language", "saving money", "a team-building event", "a healthy breakfast",
          "staying focused while studying", "a first job interview", "a podcast", "decorating a small room",
          "a family dinner", "reducing screen time", "a school fundraiser"]
FORMS = ["a short poem", "a haiku", "a four-line rhyme", "a very short story", "a limerick", "a short fable",
         "a diary entry", "a product description", "a two-sentence horror story", "a motivational message"]
ANIMALS = ["a cat", "a dragon", "an old turtle", "a curious robot", "a lost penguin", "a brave mouse", "a fox",
           "a lonely whale", "a clever crow", "a sleepy bear"]
EMAILS = ["ask my manager for a day off", "thank a colleague for their help", "apologize for missing a meeting",
          "invite friends to a picnic", "ask a teacher for an extension", "complain politely about a late delivery",
          "introduce myself to a new team", "follow up after a job interview", "request a refund",
          "remind a friend about the money they owe"]
UNITS = [("kilometers", "miles", 0.621), ("miles", "kilometers", 1.609), ("kilograms", "pounds", 2.205),
         ("pounds", "kilograms", 0.4536), ("liters", "gallons", 0.264), ("meters", "feet", 3.281),
         ("inches", "centimeters", 2.54), ("hours", "minutes", 60), ("days", "hours", 24)]
COMPARE = [("cats", "dogs"), ("tea", "coffee"), ("Python", "Java"), ("renting", "buying a home"),
           ("trains", "planes"), ("e-books", "paper books"), ("summer", "winter"), ("city life", "country life"),
           ("running", "swimming"), ("laptops", "desktops"), ("SQL", "NoSQL databases"), ("saving", "investing")]


def _math(r: random.Random) -> str:
    name, other = r.sample(NAMES, 2)
    item, items = r.choice(ITEMS)
    a, b, c = r.randint(2, 60), r.randint(2, 30), r.randint(2, 9)
    price = r.choice([0.25, 0.5, 0.75, 1.2, 1.5, 2, 2.5, 3, 4.25, 5])
    kind = r.randrange(8)
    if kind == 0:
        return f"{name} has {a} {items}. {name} gives {b} {items} to {other} and then buys {c} more at {r.choice(PLACES)}. How many {items} does {name} have now?"
    if kind == 1:
        return f"Each {item} costs ${price}. {name} buys {a} {items}. How much does {name} spend in total?"
    if kind == 2:
        return f"{name} reads {b} pages every day. The book has {a * c + b} pages. How many days does it take to finish the book?"
    if kind == 3:
        return f"A store sells a jacket for ${a * 5}. It is on sale for {r.choice([10, 15, 20, 25, 30, 40, 50])}% off. What is the sale price?"
    if kind == 4:
        return f"{name} is {a} years old. {other} is {c} times as old as {name} was {min(b, a - 1)} years ago. How old is {other}?"
    if kind == 5:
        return f"A train travels at {a + 40} km per hour for {c} hours and then at {b + 30} km per hour for {r.randint(1, 4)} hours. How far does it travel in total?"
    if kind == 6:
        return f"A rectangle is {a} cm long and {b} cm wide. What are its area and its perimeter?"
    return f"{name} and {other} share {a * c} {items} in the ratio {c}:{r.randint(1, 5)}. How many {items} does each of them get? Explain step by step."


CODE_ASKS = ["Add comments.", "Include a short test.", "Handle edge cases such as empty input.",
             "Explain its time complexity.", "Do not use library functions.", "Keep it as short as possible.",
             "Use clear variable names.", "Show an example call and its output."]


def _code(r: random.Random) -> str:
    lang, task = r.choice(LANGUAGES), r.choice(CODE_TASKS)
    kind = r.randrange(5)
    if kind <= 1:
        return f"Write a {lang} function that {task}." + (f" {r.choice(CODE_ASKS)}" if kind else "")
    if kind == 2:
        return f"Explain what this code does and what it prints:\n\n{r.choice(CODE_SNIPPETS)}"
    if kind == 3:
        return f"Find and fix the bug in this function:\n\n{r.choice(BUGGY)}"
    return f"How would you write a program in {lang} that {task}? {r.choice(CODE_ASKS)}"


def _chat(r: random.Random) -> str:
    topic, audience = r.choice(TOPICS), r.choice(AUDIENCES)
    a, b = r.choice(COMPARE)
    return r.choice([f"Explain {topic} to {audience}.", f"What is {topic}?", f"Why is {topic} important?",
                     f"Can you tell me three interesting facts about {topic}?", f"What are the pros and cons of {a} versus {b}?",
                     f"I want to learn about {topic}. Where should I start?", f"Give me some tips for {r.choice(THINGS)}.",
                     f"Hi! How are you today? Can you help me understand {topic}?", f"Which is better, {a} or {b}? Why?"])


def _summarise(r: random.Random) -> str:
    subject, action = r.choice(SUBJECTS), r.choice(ACTIONS)
    details = [d.format(n=r.randint(2, 90)) for d in r.sample(DETAILS, r.randint(3, 5))]
    text = f"Last week, {subject} {action}. " + " ".join(details)
    return r.choice(["Summarize the following text in one sentence:\n\n", "Give a short summary of this news:\n\n",
                     "What is the main point of this paragraph?\n\n", "Write a headline for this story:\n\n"]) + text


def _rewrite(r: random.Random) -> str:
    sentence = r.choice(SENTENCES)
    return r.choice([f"Rewrite this sentence to make it {r.choice(STYLES)}: \"{sentence}\"",
                     f"Correct the grammar and spelling: \"{sentence}\"",
                     f"Give {r.randint(2, 4)} different ways to say this: \"{sentence}\"",
                     f"Is this sentence written well? \"{sentence}\" Suggest a better version."])


def _lists(r: random.Random) -> str:
    n, thing = r.randint(3, 8), r.choice(THINGS)
    return r.choice([f"List {n} ideas for {thing}.", f"Give me {n} tips for {thing}.",
                     f"What are {n} things I need for {thing}?", f"Make a checklist with {n} steps for {thing}."])


def _creative(r: random.Random) -> str:
    return f"Write {r.choice(FORMS)} about {r.choice(ANIMALS + TOPICS)}."


def _email(r: random.Random) -> str:
    sender = r.choice(NAMES)
    return r.choice([f"Write a short email to {r.choice(EMAILS)}. Sign it as {sender}.",
                     f"Help me write a message to {r.choice(EMAILS)}.",
                     f"Draft a {r.choice(['short', 'polite', 'friendly', 'formal'])} email to {r.choice(EMAILS)}."])


def _reasoning(r: random.Random) -> str:
    a, b, c = r.sample(NAMES, 3)
    n = r.randint(2, 12)
    return r.choice([f"{a} is taller than {b}, and {b} is taller than {c}. Who is the shortest? Explain.",
                     f"If today is {r.choice(['Monday', 'Tuesday', 'Friday', 'Sunday'])}, what day will it be in {n * 3 + 1} days?",
                     f"{a} has twice as many coins as {b}. Together they have {n * 3} coins. How many coins does {b} have?",
                     f"What is the next number in the sequence {n}, {n * 2}, {n * 4}, {n * 8}? Explain the pattern.",
                     f"A farmer has {n + 4} chickens and {n} cows. How many legs are there in total?"])


def _convert(r: random.Random) -> str:
    src, dst, _ = r.choice(UNITS)
    return f"Convert {r.randint(2, 500)} {src} to {dst} and show the calculation."


MODIFIERS = ["Keep it short.", "Use simple words.", "Use bullet points.", "Be concise.", "Explain your reasoning.",
             "Answer in {n} sentences.", "Use at most {m} words.", "Give an example.", "Start with a one-line answer.",
             "Write it for {audience}."]


def _modifier(r: random.Random) -> str:
    return r.choice(MODIFIERS).format(n=r.randint(2, 5), m=r.choice([30, 50, 80, 100, 150]), audience=r.choice(AUDIENCES))


KINDS = {"math": (_math, 4), "code": (_code, 3), "chat": (_chat, 3), "summarise": (_summarise, 2),
         "rewrite": (_rewrite, 1), "lists": (_lists, 2), "creative": (_creative, 2), "email": (_email, 1),
         "reasoning": (_reasoning, 2), "convert": (_convert, 1)}


def _stream(split: str, seed: int):
    r = random.Random(f"orthrus-prompts/{split}/{seed}")
    names, weights = list(KINDS), [w for _, w in KINDS.values()]
    while True:
        kind = r.choices(names, weights)[0]
        prompt = KINDS[kind][0](r)
        if kind not in ("math", "code", "summarise", "convert") and r.random() < 0.5:
            prompt += " " + _modifier(r)  # multiplies the small template spaces
        yield {"kind": kind, "prompt": prompt}


def prompt_set(split: str, n: int | None = None, *, seed: int = 0) -> list[dict]:
    """The first ``n`` distinct prompts of ``split`` ({"kind", "prompt"} records)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = DEFAULT_NUM[split] if n is None else n
    # Held-out texts must never be train texts: exclude the whole default train split.
    exclude = _train_texts(max(DEFAULT_NUM["train"], n), seed) if split == "heldout" else set()
    seen, out = set(exclude), []
    for attempt, record in enumerate(_stream(split, seed)):
        if len(out) >= n:
            break
        if attempt > 50 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct {split} prompts (the templates ran out)")
        if record["prompt"] not in seen:
            seen.add(record["prompt"])
            out.append(record)
    return out


@functools.lru_cache(maxsize=4)
def _train_texts(n: int, seed: int) -> frozenset[str]:
    return frozenset(p["prompt"] for p in prompt_set("train", n, seed=seed))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for train.jsonl and heldout.jsonl")
    p.add_argument("--num-train", type=int, default=DEFAULT_NUM["train"])
    p.add_argument("--num-heldout", type=int, default=DEFAULT_NUM["heldout"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", args.num_train), ("heldout", args.num_heldout)):
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for record in prompt_set(split, n, seed=args.seed):
                f.write(json.dumps(record) + "\n")
        print(f"wrote {n} prompts to {out / f'{split}.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
