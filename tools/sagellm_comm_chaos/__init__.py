"""``tools/chaos``: kill a rank at a random point of a stream of mixed collectives and check what the others see.

``stream``: the seeded, checked stream of collectives. ``rank``: what one rank process does (victim and survivors).
``trial``: plan a trial, run it from the parent, collect leftovers. ``verdict``: judge a trial record, summarize.
A developer tool, never shipped in a wheel (tests import it through the root pytest ``pythonpath``).
"""
