"""One process-wide lock for importing the machine-learning libraries from worker threads.

transformers' lazy top-level module is not safe to import from two threads at once. With the embedder
(sentence-transformers) and the guard's prompt classifier (transformers) loading side by side in one
`ragbus up` process, the guard sometimes failed to start with "cannot import name 'AutoModel' from
'transformers'" (1 run in 8 of a two-thread reproduction, and once in a fresh clone's demo). Every
adapter that imports them, and builds its model from them, does so holding this lock: a load waits for
the other (a second or two at startup), and calls on loaded models never take it.
"""

from __future__ import annotations

import threading

ML_IMPORT_LOCK = threading.RLock()
