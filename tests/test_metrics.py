"""Reference-exact metrics: every expected value is worked out by hand from the rules in
/work/shared/notes/eval-metrics.md (section numbers in the comments)."""

import numpy as np
import pytest

from mm_assets.evaluation.metrics import (
    METRIC_VERSIONS,
    _assign,
    anls,
    count_accuracy,
    extract_points,
    pointing_prf,
    realworldqa_accuracy,
    realworldqa_accuracy_legacy,
    relaxed_accuracy,
)

# --- ANLS (§2.3, §2.4, §2.5) -------------------------------------------------------------------

ANLS_CASES = [
    ("1995", ["1995"], 1.0),
    ("  1995 \n", ["1995"], 1.0),  # lmms-eval trims the output first
    ("\n\nParis", ["Paris"], 1.0),
    ("PARIS", ["paris"], 1.0),  # case-insensitive distance
    ("Paris.", ["Paris"], 1 - 1 / 6),  # punctuation is an edit
    ("straße", ["strasse"], 1 - 2 / 7),  # d=2; len("STRASSE")=7 on both sides
    ("cat     dog", ["cat dot"], 1 - 1 / 11),  # spaces collapsed for d, counted in the denominator
    ("a\tb", ["a b"], 1.0),
    ("new\u00a0york", ["new york"], 1.0),  # NBSP is whitespace
    ("東京\u3000タワー", ["東京 タワー"], 1.0),  # so is U+3000
    ("new\u200byork", ["newyork"], 1 - 1 / 8),  # a zero-width space is not
    ("１２３", ["123"], 0.0),  # no NFKC: 3 substitutions over 3
    ("cafe\u0301", ["café"], 1 - 2 / 5),  # combining accent: e→é and delete U+0301, over 5
    ("İstanbul", ["istanbul"], 1 - 1 / 8),  # "İ".lower() is 2 code points: d=1; both upper() are 8 long
    ("ﬁle", ["file"], 0.5),  # ligature: d=2, but "ﬁle".upper() is "FILE": 1-2/4, exactly 0.5 is kept
    ("abxy", ["abcd"], 0.5),  # the boundary: kept
    ("ab", ["abcd"], 0.5),  # 2 deletions over 4: kept
    ("ab", ["abcde"], 0.0),  # 1-3/5 = 0.4 < 0.5
    ("abcdewxyz", ["abcdefghi"], 1 - 4 / 9),  # NLD 4/9: kept
    ("abcdvwxyz", ["abcdefghi"], 0.0),  # NLD 5/9: zeroed
    ("", ["abc"], 0.0),
    ("", [""], 1.0),  # L == 0
    ("   ", [""], 1.0),  # whitespace-only output trims to empty
    ("   ", ["abc"], 0.0),
    ("The answer is 1995", ["1995"], 0.0),  # 1-14/18, no answer extraction
    ("5", ["five"], 0.0),  # no number words: 4 edits over 4
    ("1995", ["1996", "1995"], 1.0),  # best gold wins
    ("1995", ["1996", "1996"], 0.75),  # duplicate golds change nothing
    ("Jon Smith", ["John Smith", "J. Smith"], 0.9),  # 1-1/10 beats 1-2/9
    ("x" + " " * 20, ["y"], 0.0),  # trailing spaces trimmed first (VLMEvalKit would give 0.952)
    ("new york", ["  New   York "], 1.0),  # gold normalised too; d=0
    ("new yorc", ["  New   York "], 1 - 1 / 13),  # raw gold length 13 in the denominator
    ("1995\n1996", ["1995"], 0.0),  # newline collapses to a space: 1-5/9
    ("$1,000", ["1000"], 1 - 2 / 6),
    ("abc", ["ABD"], 1 - 1 / 3),
    ("x", [], 0.0),  # no gold: our choice (the reference would raise)
]


@pytest.mark.parametrize("prediction,answers,expected", ANLS_CASES)
def test_anls(prediction, answers, expected):
    assert anls(prediction, answers) == pytest.approx(expected, abs=1e-12)


# --- ChartQA relaxed accuracy (§3.3, §3.4) -----------------------------------------------------

RELAXED_CASES = [
    ("17", ["17"], 1.0),
    (" 17 \n", ["17"], 1.0),  # trimmed
    ("17.5", ["17"], 1.0),  # 0.5/17 = 2.9%
    ("18", ["17"], 0.0),  # 1/17 = 5.9%
    ("105", ["100"], 1.0),  # exactly 0.05
    ("95", ["100"], 1.0),
    ("1.05", ["1"], 0.0),  # 0.05000000000000004 > 0.05 in doubles
    ("0.95", ["1"], 0.0),  # same
    ("0.315", ["0.3"], 0.0),  # same kind of rounding
    ("17%", ["0.17"], 1.0),  # 17/100 == 0.17
    ("17", ["17%"], 0.0),  # 17 vs 0.17
    ("17.5%", ["17%"], 1.0),  # 0.175 vs 0.17: 2.9%
    ("17 %", ["17%"], 1.0),  # float() ignores the space
    ("17%%", ["0.17"], 1.0),  # every trailing % stripped
    ("1,000", ["1000"], 0.0),  # comma: non-numeric, string compare fails
    ("1_000", ["1000"], 1.0),  # float() accepts digit-group underscores
    ("1e3", ["1000"], 1.0),
    ("+5", ["5"], 1.0),
    ("５", ["5"], 1.0),  # fullwidth digit parses
    ("٥", ["5"], 1.0),  # Arabic-Indic digit parses
    ("−5", ["-5"], 0.0),  # Unicode minus does not; string compare fails
    ("-17", ["17"], 0.0),  # 34/17
    ("-17", ["-17.5"], 1.0),  # 0.5/17.5
    ("0", ["0"], 1.0),  # gold 0 is falsy: string compare
    ("0.0", ["0"], 0.0),
    ("-0", ["0"], 0.0),
    ("0%", ["0"], 0.0),
    ("0.001", ["0"], 0.0),
    ("nan", ["nan"], 0.0),  # numeric branch gives NaN
    ("inf", ["inf"], 0.0),  # inf - inf is NaN
    ("Infinity", ["1e400"], 0.0),  # both inf
    ("5", ["nan"], 0.0),  # NaN gold is truthy: NaN comparison
    ("2020", ["2019"], 1.0),  # years get the tolerance too
    ("2119", ["2019"], 1.0),  # 100/2019 = 4.95%
    ("The value is 17", ["17"], 0.0),
    ("About 17", ["17"], 0.0),
    ("Yes", ["yes"], 1.0),
    ("dark  blue", ["dark blue"], 0.0),  # no internal whitespace collapsing
    ("$17", ["17"], 0.0),
    ("17", ["$17"], 0.0),  # gold non-numeric: "17" != "$17"
    ("", ["17"], 0.0),
    ("", [""], 1.0),  # both non-numeric and equal
    ("%", ["%"], 1.0),  # "%" strips to "", which does not parse: string compare
    ("[1, 2]", ["[1, 2]"], 1.0),  # not split into golds (VLMEvalKit would give 0)
    ("blue", ["red", "Blue"], 1.0),  # max over golds
    ("16.5", ["20", "17"], 1.0),  # second gold within 5%
]


@pytest.mark.parametrize("prediction,answers,expected", RELAXED_CASES)
def test_relaxed_accuracy(prediction, answers, expected):
    assert relaxed_accuracy(prediction, answers) == expected


# --- CountBench, lmms-eval `countbench` (§4.2) -------------------------------------------------

COUNT_CASES = [
    ("5", 5, 1.0),
    ("Five", 5, 1.0),
    ("FIVE ", 5, 1.0),
    ("fiVe", 5, 1.0),
    ("\tThree\t", 3, 1.0),
    ("seven\n", 7, 1.0),
    ("\n 7 \n", 7, 1.0),
    ("2", 2, 1.0),
    ("ten", 10, 1.0),
    ("eleven", 11, 1.0),
    ("seventeen", 17, 1.0),
    ("twenty", 20, 1.0),
    ("zero", 0, 1.0),
    ("none", 0, 1.0),
    ("None", 0, 1.0),
    ("five.", 5, 0.0),  # word mapping needs the whole string
    ("5.", 5, 0.0),
    ("05", 5, 0.0),
    ("+5", 5, 0.0),
    ("5.0", 5, 0.0),
    ("5 apples", 5, 0.0),
    ("**5**", 5, 0.0),
    ("5\n6", 5, 0.0),
    ("five five", 5, 0.0),
    ("twenty-one", 21, 0.0),  # not in the table
    ("twenty one", 21, 0.0),
    ("thirty", 30, 0.0),
    ("a dozen", 12, 0.0),
    ("There are none.", 0, 0.0),
    ("three ", 4, 0.0),
    ("10", 1, 0.0),  # no substring test (VLMEvalKit would accept)
    ("1", 10, 0.0),
    ("５", 5, 0.0),  # string equality: fullwidth is not "5"
    ("٥", 5, 0.0),
    ("Ｆｉｖｅ", 5, 0.0),  # lowercases to fullwidth "ｆｉｖｅ", not a table word
    ("", 2, 0.0),
]


@pytest.mark.parametrize("prediction,number,expected", COUNT_CASES)
def test_count_accuracy(prediction, number, expected):
    assert count_accuracy(prediction, number) == expected


# --- RealWorldQA, lmms-eval HEAD (§5.3) --------------------------------------------------------

MC_Q = (
    "Which way is the arrow facing?\nA. The arrow is facing right.\nB. The arrow is facing left.\n"
    "C. The arrow is facing up.\nD. The arrow is facing down.\n"
    "Please answer directly with only the letter of the correct option and nothing else."
)
SHORT_Q = "Which way does the road go?\nPlease answer directly with a single word or number."

RWQA_HEAD_CASES = [
    ("B", "B", MC_Q, 1.0),
    ("b", "B", MC_Q, 0.0),  # only uppercase letters count; no fallback hit either
    ("a", "A", MC_Q, 0.0),
    ("(B)", "B", MC_Q, 1.0),
    ("B.", "B", MC_Q, 1.0),  # trailing "." stripped, then a standalone start letter
    ("B) left", "B", MC_Q, 1.0),
    ("**B**", "B", MC_Q, 1.0),  # no format matches; the any-occurrence fallback finds B
    ("B. The arrow is facing left.", "B", MC_Q, 1.0),  # start letter wins (priority 10)
    ("The answer is B.", "B", MC_Q, 1.0),  # end letter
    ("The answer is (C).", "B", MC_Q, 0.0),  # picks C
    ("Answer: B", "B", MC_Q, 1.0),  # the "A" of "Answer" is followed by a letter: not a start
    ("Answer: D", "B", MC_Q, 0.0),
    ("The correct answer is: B", "B", MC_Q, 1.0),
    ("My answer is C", "C", MC_Q, 1.0),
    ("Option B", "B", MC_Q, 1.0),
    ("I think it's B, not C.", "B", MC_Q, 0.0),  # C is the standalone end letter (priority 9)
    ("C or B", "B", MC_Q, 0.0),  # C at the start (10) beats B at the end (9)
    ("It is A. No wait, it is C.", "C", MC_Q, 1.0),  # end letter beats "A." (period, 5)
    ("A. The arrow is facing right.\nB. The arrow is facing left.", "B", MC_Q, 0.0),  # start: A
    ("B\n\nExplanation: the arrow points left.", "B", MC_Q, 1.0),
    ("Dog", "D", MC_Q, 1.0),  # quirk: no format, fallback finds the D of "Dog"
    ("答案是B", "B", MC_Q, 1.0),  # answer phrase; "是" is alphabetic so not an end letter
    ("E", "B", MC_Q, 0.0),  # only A–D are choices
    ("", "B", MC_Q, 0.0),
    ("   ", "B", MC_Q, 0.0),
    ("B", "b", MC_Q, 1.0),  # gold letter compared uppercased
    ("Yes", "Yes", SHORT_Q, 1.0),
    ("yes.", "Yes", SHORT_Q, 1.0),  # trailing dots stripped
    ("Yes.\n", "yes", SHORT_Q, 1.0),
    ("downhill...", "Downhill", SHORT_Q, 1.0),
    ("  No \n", "No", SHORT_Q, 1.0),
    ("Yes!", "Yes", SHORT_Q, 0.0),
    ("(Yes)", "Yes", SHORT_Q, 0.0),
    ("The downhill", "Downhill", SHORT_Q, 0.0),
    ("3", "3", SHORT_Q, 1.0),
    ("three", "3", SHORT_Q, 0.0),  # HEAD has no number words
    ("Down-hill", "Downhill", SHORT_Q, 0.0),
]


@pytest.mark.parametrize("prediction,answer,question,expected", RWQA_HEAD_CASES)
def test_realworldqa_accuracy(prediction, answer, question, expected):
    assert realworldqa_accuracy(prediction, answer, question) == expected


# --- RealWorldQA, legacy lmms-eval v0.2.3–v0.6.x (§5.3 "Legacy") -------------------------------

YES_NO_Q = ("Is it safe to cross?\nA. Yes\nB. No\n"
            "Please answer directly with only the letter of the correct option and nothing else.")
S_MAIN_Q = "Which street is this, Elm or S. Main\nPlease answer directly with a single word or number."

RWQA_LEGACY_CASES = [
    ("B", "B", MC_Q, 1.0),
    ("b", "B", MC_Q, 1.0),  # case ignored
    (" B ", "B", MC_Q, 1.0),
    ("(B)", "B", MC_Q, 1.0),  # punctuation deleted
    ("**B**", "B", MC_Q, 1.0),
    ("B.", "B", MC_Q, 1.0),
    ("C", "B", MC_Q, 0.0),
    ("B. The arrow is facing left.", "B", MC_Q, 0.0),  # option texts keep their period: no match
    ("The arrow is facing left.", "B", MC_Q, 0.0),  # same reason
    ("The answer is B.", "B", MC_Q, 0.0),
    ("B\nC", "B", MC_Q, 0.0),  # whitespace kept
    ("", "B", MC_Q, 0.0),
    ("No", "B", YES_NO_Q, 1.0),  # option text found: mapped to its letter
    ("Yes, it is", "A", YES_NO_Q, 1.0),  # "Yes" found inside the cleaned response
    ("Not sure", "B", YES_NO_Q, 1.0),  # quirk: "No" is a substring of "Not"
    ("yes", "A", YES_NO_Q, 0.0),  # option search is case-sensitive: stays "yes"
    ("zero", "0", SHORT_Q, 1.0),
    ("Zero", "0", SHORT_Q, 1.0),  # lowercased whole-response lookup
    ("Zero.", "0", SHORT_Q, 0.0),  # not the exact whole string
    (" zero", "0", SHORT_Q, 0.0),  # the lookup runs on the untrimmed response
    ("ten", "10", SHORT_Q, 1.0),
    ("eleven", "11", SHORT_Q, 0.0),  # table stops at ten
    ("Down-hill", "Downhill", SHORT_Q, 1.0),
    ("down_hill", "Downhill", SHORT_Q, 1.0),  # "_" survives the filter, exact_match drops it
    ("Yes!", "Yes", SHORT_Q, 1.0),
    ("(Yes)", "Yes", SHORT_Q, 1.0),
    ("Yes\n", "yes", SHORT_Q, 1.0),
    ("The downhill", "Downhill", SHORT_Q, 0.0),
    ("3.", "3", SHORT_Q, 1.0),
    ("3.5", "35", SHORT_Q, 1.0),  # the decimal point is deleted
    ("naïve", "naive", SHORT_Q, 0.0),
    ("Main", "Main", S_MAIN_Q, 0.0),  # "S. Main" parsed as option A: the answer becomes "A"
    ("Elm", "Elm", S_MAIN_Q, 1.0),
]


@pytest.mark.parametrize("prediction,answer,question,expected", RWQA_LEGACY_CASES)
def test_realworldqa_accuracy_legacy(prediction, answer, question, expected):
    assert realworldqa_accuracy_legacy(prediction, answer, question) == expected


# --- PixMo-Points pointing P/R/F1, Molmo v1 with gt in pixels (§6.3–§6.6) -----------------------
# Image 100×50 px, so a prediction at (x%, y%) lands at (x, y/2) px.
W, H = 100, 50


def box(x0, x1, y0, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


GT2 = [(20.0, 10.0), (70.0, 30.0)]
MASKS2 = [box(15, 25, 5, 15), box(65, 75, 25, 35)]
PERFECT = 2 / (2 + 1e-10)  # = 0.99999999995: the 1e-10 in Molmo's F1 denominator
HALF_RECALL = (1.0, 0.5, 1 / (1.5 + 1e-10))  # one hit among two gts with one prediction

POINTING_CASES = [
    ('<points x1="20.0" y1="20.0" x2="70.0" y2="60.0" alt="o">o</points>', (1.0, 1.0, PERFECT)),
    ('<point x="20.0" y="20.0" alt="o">o</point>', HALF_RECALL),
    # a third point on nothing: P=2/3, R=1
    ('<points x1="20.0" y1="20.0" x2="70.0" y2="60.0" x3="50.0" y3="80.0" alt="o">o</points>',
     (2 / 3, 1.0, 2 * (2 / 3) / (5 / 3 + 1e-10))),
    # duplicates: only one can pair with the first gt, the other pairs with the second and misses
    ('<points x1="20.0" y1="20.0" x2="20.0" y2="20.0" alt="o">o</points>', (0.5, 0.5, 0.5 / (1 + 1e-10))),
    ('<point x="40.0" y="40.0" alt="o">o</point>', (0.0, 0.0, 0.0)),  # (40, 20) px: in no mask
    ('<points x1="120.0" y1="20.0" x2="20.0" y2="20.0" alt="o">o</points>', HALF_RECALL),  # >100 dropped
    ('<point x="150.0" y="20.0" alt="o">o</point>', (0.0, 0.0, 0.0)),  # passes the gate, no point left
    ("(20, 20)", (0.0, 0.0, 0.0)),  # integer tuple: gate yes, extractor no
    ("(20.00, 20.00)", (0.0, 0.0, 0.0)),  # two decimals: gate yes, extractor no
    ("(-5.0, 20.0)", (0.0, 0.0, 0.0)),  # negative: gate yes, extractor no
    ("(20.0, 20.0)", HALF_RECALL),
    ("(20.0,20.0)", HALF_RECALL),  # comma without space
    ("(20.0, 20.0)\n(70.0, 60.0)", (1.0, 1.0, PERFECT)),
    ("(20.0, 20.0)(70.0, 60.0)", (1.0, 1.0, PERFECT)),  # no separator is allowed
    ("(20.0, 20.0) (70.0, 60.0)", (0.0, 0.0, 0.0)),  # a space between tuples fails the gate
    ("(20.0, 20.0)\n\n(70.0, 60.0)", (0.0, 0.0, 0.0)),  # so does a blank line
    ("(20.0, 20.0)\n(-5.0, 10.0)", HALF_RECALL),  # negative tuple silently dropped
    ('Sure! <point x="20.0" y="20.0" alt="o">o</point>', (0.0, 0.0, 0.0)),  # leading prose
    ('<point x="20.0" y="20.0" alt="o">o</point>.', (0.0, 0.0, 0.0)),  # trailing period
    ('<POINT x="20.0" y="20.0" alt="o">o</POINT>', (0.0, 0.0, 0.0)),  # uppercase tag
    ('<point x="20.0" y="20.0">o</point>', (0.0, 0.0, 0.0)),  # alt is required
    ("<point x='20.0' y='20.0' alt='o'>o</point>", (0.0, 0.0, 0.0)),  # single quotes
    ('<point y="20.0" x="20.0" alt="o">o</point>', (0.0, 0.0, 0.0)),  # attribute order is fixed
    ("Click(20.0, 20.0)", (0.0, 0.0, 0.0)),  # Click(...) fails the gate
    ('\n  <point x="20.0" y="20.0" alt="o">o</point>\n', HALF_RECALL),  # outer whitespace trimmed
    ('<point x="20.0"\ny="20.0"  alt="o">o</point>', HALF_RECALL),  # any whitespace run between attributes
    ('<point x=" 20" y=" 20" alt="o">o</point>', HALF_RECALL),  # spaces inside quotes, integers
    ('<point x="20.0" y="20.0" alt="a "b">c</point>', HALF_RECALL),  # alt may hold anything
    ('<point p=200,200 alt="o">o</point>', HALF_RECALL),  # per-mille: 20.0%, 20.0%
    ('<points 1=200,200 2=700,600 alt="o">o</points>', (1.0, 1.0, PERFECT)),
    # The gate's \d accepts Arabic-Indic digits, the extractor's [0-9] does not.
    ('<point x="٢٠.٠" y="٢٠.٠" alt="o">o</point>', (0.0, 0.0, 0.0)),
    ("", (0.0, 0.0, 0.0)),
    ("There are none.", (0.0, 0.0, 0.0)),
    ("<points alt=\"o\">o</points>", (0.0, 0.0, 0.0)),  # needs at least one coordinate pair
]


@pytest.mark.parametrize("prediction,expected", POINTING_CASES)
def test_pointing_two_gts(prediction, expected):
    assert pointing_prf(prediction, GT2, MASKS2, W, H) == pytest.approx(expected, abs=1e-12)


NO_GT_MASK = [np.zeros((H, W), bool)]
NO_GT_CASES = [
    ("There are none.", 1.0),
    ("This isn't in the image.", 1.0),
    ("", 1.0),
    ('<point x="150.0" y="20.0" alt="o">o</point>', 1.0),  # >100 is no point
    ("(20, 20)", 1.0),  # integers are not extracted
    ('<point x="20.0" y="20.0" alt="o">o</point>', 0.0),
    ("Sure! (20.0, 20.0)", 0.0),  # no format gate without gt: any extracted point fails
    ("Click(20.0, 20.0)", 0.0),
]


@pytest.mark.parametrize("prediction,expected", NO_GT_CASES)
def test_pointing_no_gt(prediction, expected):
    assert pointing_prf(prediction, [], NO_GT_MASK, W, H) == (expected, expected, expected)


def _pixel_mask(x, y):
    m = np.zeros((H, W), bool)
    m[y, x] = True
    return m


@pytest.mark.parametrize("x_pct,hit", [
    ("10.5", True),  # 10.5 px rounds half to even: 10
    ("9.5", True),  # 9.5 → 10
    ("11.5", False),  # 11.5 → 12
    ("10.4", True),
    ("10.6", False),
])
def test_pointing_rounds_half_to_even(x_pct, hit):
    got = pointing_prf(f'<point x="{x_pct}" y="20.0" alt="o">o</point>', [(10.0, 10.0)], [_pixel_mask(10, 10)], W, H)
    assert got == pytest.approx((1.0, 1.0, PERFECT) if hit else (0.0, 0.0, 0.0))


@pytest.mark.parametrize("x_pct,expected", [
    ("99.0", (1.0, 1.0, PERFECT)),  # 99 px: last column
    ("100.0", (0.0, 0.0, 0.0)),  # 100 px == W: outside the image
    ("0.0", (0.0, 0.0, 0.0)),  # column 0 is outside this mask
])
def test_pointing_image_edge(x_pct, expected):
    mask = box(90, 99, 5, 15)
    got = pointing_prf(f'<point x="{x_pct}" y="20.0" alt="o">o</point>', [(99.0, 10.0)], [mask], W, H)
    assert got == pytest.approx(expected)


def test_pointing_mask_of_the_paired_gt_decides():
    # gts at (20,10) and (30,10); mask 1 is x 15..25, mask 2 is x 15..35. Predictions at
    # (26,10) and (40,10): the cheapest pairing is 26→gt1 (6) + 40→gt2 (10) = 16 < 4 + 20, and
    # neither lies in its partner's mask, although (26,10) lies in mask 2. No distance threshold.
    got = pointing_prf('<points x1="26.0" y1="20.0" x2="40.0" y2="20.0" alt="o">o</points>',
                       [(20.0, 10.0), (30.0, 10.0)], [box(15, 25, 5, 15), box(15, 35, 5, 15)], W, H)
    assert got == (0.0, 0.0, 0.0)


def test_pointing_never_raises_on_garbage():
    for text in ["<point", '<points x1="1e999" y1="2" alt="">', "(" * 500, "\x00\ud800", "p=999,999" * 50]:
        p, r, f = pointing_prf(text, GT2, MASKS2, W, H)
        assert 0.0 <= p <= 1.0 and 0.0 <= r <= 1.0 and 0.0 <= f <= 1.0


def test_perfect_f1_is_the_published_constant():
    assert pointing_prf("(20.0, 20.0)\n(70.0, 60.0)", GT2, MASKS2, W, H)[2] == pytest.approx(0.99999999995, abs=1e-15)


# --- extract_points (§6.3) --------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ('<point x="61.5" y="40.6" alt="dog">dog</point>', [(123.0, 40.6)]),  # W=200, H=100
    ('<points x1="10" y1="20" x2="30.25" y2="40" alt="a">a</points>', [(20.0, 20.0), (60.5, 40.0)]),
    ("Click(10.0, 20.0)", [(20.0, 20.0), (20.0, 20.0)]),  # matched by the Click and the tuple pattern
    ("(10.0 20.0)", [(20.0, 20.0)]),  # comma optional
    ("(10.0,  20.0)", []),  # at most one space
    ("(120.0, 5.0)", []),  # max coordinate > 100: dropped
    ("(100.0, 100.0)", [(200.0, 100.0)]),  # exactly 100 is kept
    ("p=123,456", [(24.6, 45.6)]),  # per-mille
    ("7 = 050 , 999", [(10.0, 99.9)]),
    ('<points x1="50.0" y1="50.0" alt="a">a</points> (10.0, 10.0)', [(20.0, 10.0), (100.0, 50.0)]),  # tuples first
    ("no points here", []),
])
def test_extract_points(text, expected):
    got = extract_points(text, 200, 100)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g == pytest.approx(e)


# --- the pairing step --------------------------------------------------------------------------

@pytest.mark.parametrize("cost,expected", [
    ([[1.0, 2.0], [2.0, 1.0]], [(0, 0), (1, 1)]),
    ([[5.0, 1.0], [1.0, 5.0]], [(0, 1), (1, 0)]),
    ([[0.0, 0.0], [0.0, 0.0]], [(0, 0), (1, 1)]),  # constant matrix: identity, as scipy
    ([[3.0], [1.0], [2.0]], [(1, 0)]),  # more rows than columns
    ([[4.0, 1.0, 3.0]], [(0, 1)]),
    ([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 6.0, 9.0]], [(0, 2), (1, 1), (2, 0)]),  # 10 is the minimum
])
def test_assignment(cost, expected):
    assert sorted(_assign(cost)) == expected


def test_metric_versions_name_every_metric():
    assert set(METRIC_VERSIONS) == {"anls", "relaxed_accuracy", "count_accuracy", "realworldqa_accuracy",
                                    "realworldqa_accuracy_legacy", "pointing_prf"}
    assert all(METRIC_VERSIONS.values())
