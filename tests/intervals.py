"""Test helper: how many (start, end) intervals are open at the same time, at most."""


def max_overlap(intervals) -> int:
    # at equal times an end sorts before a start: a slot released and retaken is not an overlap
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    live = peak = 0
    for _, d in events:
        live += d
        peak = max(peak, live)
    return peak
