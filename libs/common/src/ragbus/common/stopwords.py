"""English function words and question words: matching them says nothing about whether one text answers
or supports another (the orchestrator's extractive tier, the guard's support check). Pure data."""

from __future__ import annotations

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each either else ever every
    few for from further had has have having he her here hers herself him himself his i if in into is it
    its itself just me might more most must my myself neither no nor not now of off on once only or other
    our ours ourselves out over own per same shall she should so some such than that the their theirs
    them themselves then there these they this those through to too under until up upon us very via was
    we were what when where whether which while who whom whose why will with within without would yet you
    your yours yourself yourselves how many much please tell know according say says said
    """.split()  # noqa: SIM905 - a word list reads better as prose than as 150 quoted strings
)
