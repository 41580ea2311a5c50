"""Language (text-only) rows: word problems and string/number tasks with computed answers."""

from __future__ import annotations

import random

from ..conversations import QA
from ..vocab import FIRST_NAMES, OCR_WORDS
from .base import Drawn

_GOODS = (("apples", 0.5, 3.0), ("notebooks", 1.5, 6.0), ("pens", 0.4, 2.5), ("tickets", 4.0, 25.0),
          ("loaves of bread", 1.5, 5.0), ("bottles of water", 0.5, 2.0), ("books", 5.0, 30.0))


def _money(v: float) -> str:
    return f"${v:.2f}"


def _problem(rng: random.Random) -> tuple[QA, QA | None]:
    name, friend = rng.sample(FIRST_NAMES, 2)
    kind = rng.randrange(6)
    if kind == 0:
        goods, lo, hi = rng.choice(_GOODS)
        n, price = rng.randint(2, 12), round(rng.uniform(lo, hi) * 4) / 4
        paid = (int(n * price) // 10 + 1) * 10 + rng.choice([0, 10, 20])
        cost = n * price
        q = f"{name} buys {n} {goods} at {_money(price)} each and pays with {_money(paid)}. How much change does {name} get?"
        a = (f"The {goods} cost {n} x {_money(price)} = {_money(cost)}. The change is "
             f"{_money(paid)} - {_money(cost)} = {_money(paid - cost)}. The answer is {_money(paid - cost)}.")
        follow = QA(f"What if {name} bought one more?",
                    f"Then the cost is {_money(cost + price)} and the change is {_money(paid - cost - price)}.")
        return QA(q, a), follow
    if kind == 1:
        speed, hours = rng.randint(30, 110), rng.randint(2, 9)
        q = f"A train travels at {speed} km/h for {hours} hours. How far does it travel?"
        a = f"Distance = speed x time = {speed} x {hours} = {speed * hours} km. The answer is {speed * hours} km."
        follow = QA("How far would it go in half that time?",
                    f"Half the time is {hours / 2:g} hours, so it goes {speed * hours / 2:g} km.")
        return QA(q, a), follow
    if kind == 2:
        per, groups = rng.randint(2, 12), rng.randint(2, 12)
        extra = rng.randint(0, per - 1)
        total = per * groups + extra
        q = f"{name} shares {total} marbles equally among {groups} friends. How many does each friend get, and how many are left over?"
        a = f"{total} ÷ {groups} = {per} remainder {extra}. Each friend gets {per} marbles and {extra} are left over."
        return QA(q, a), None
    if kind == 3:
        age, diff, years = rng.randint(5, 40), rng.randint(2, 30), rng.randint(2, 15)
        q = f"{name} is {age} years old and {friend} is {diff} years older. How old will {friend} be in {years} years?"
        a = f"{friend} is {age} + {diff} = {age + diff} now, so in {years} years {friend} will be {age + diff + years}. The answer is {age + diff + years}."
        return QA(q, a), None
    if kind == 4:
        price, pct = rng.randint(20, 400), rng.choice([10, 15, 20, 25, 30, 40, 50])
        off = price * pct / 100
        q = f"A jacket costs ${price}. It is on sale for {pct}% off. What is the sale price?"
        a = f"The discount is {pct}% of ${price} = ${off:g}. The sale price is ${price} - ${off:g} = ${price - off:g}."
        return QA(q, a), QA("How much is saved?", f"${off:g} is saved.")
    w, l = rng.randint(3, 40), rng.randint(3, 40)
    q = f"A garden is {w} m wide and {l} m long. What is its area?"
    a = f"Area = {w} x {l} = {w * l} square metres. The answer is {w * l}."
    return QA(q, a), QA("And its perimeter?", f"Perimeter = 2 x ({w} + {l}) = {2 * (w + l)} m.")


def draw_word_problem(rng: random.Random, sizing=None) -> Drawn:
    qa, follow = _problem(rng)
    qas = [qa] + ([follow] if follow else [])
    return Drawn(None, qas, {})


def _task(rng: random.Random) -> QA:
    kind = rng.randrange(5)
    words = [wd for wd in OCR_WORDS if wd.isalpha() and wd.isascii() and wd.islower()]
    if kind == 0:
        ws = rng.sample(words, rng.randint(4, 7))
        return QA(f"Sort the following words alphabetically: {', '.join(ws)}.", ", ".join(sorted(ws)),
                  wrong=", ".join(ws))
    if kind == 1:
        wd = rng.choice(words)
        return QA(f"Reverse the word \"{wd}\".", wd[::-1], wrong=wd)
    if kind == 2:
        wd = rng.choice(words)
        n = sum(c in "aeiou" for c in wd)
        return QA(f"How many vowels are in the word \"{wd}\"?",
                  f"The vowels in \"{wd}\" are {', '.join(c for c in wd if c in 'aeiou')}, so there are {n}.")
    if kind == 3:
        n = rng.randint(10, 9999)
        s = sum(int(d) for d in str(n))
        return QA(f"What is the sum of the digits of {n}?", f"{' + '.join(str(n))} = {s}.")
    n = rng.randint(2, 255)
    return QA(f"Convert {n} to binary.", f"{n} in binary is {n:b}.", wrong=f"{n} in binary is {n + 1:b}.")


def draw_text_task(rng: random.Random, sizing=None) -> Drawn:
    return Drawn(None, [_task(rng) for _ in range(3)], {})
