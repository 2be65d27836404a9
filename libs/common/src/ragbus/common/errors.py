"""The two kinds of failure a handler can have, and how the shared middleware tells them apart.

- Retryable: the work could succeed later (a dependency is down, a timeout). The message is retried in
  place with backoff until it succeeds; it is never dead-lettered, and nothing after it on the partition
  is committed meanwhile.
- Poison: the message can never succeed (it does not parse, it breaks a contract, it names a file that
  does not exist). It goes to `<topic>.dlq` with the reason, is committed, and the service goes on.

Anything else is a bug we did not classify: it is retried a few times (it may be transient) and then
dead-lettered with its traceback summary, so one bad message cannot stall a partition forever.
"""

from __future__ import annotations

import json

import pydantic

from ragbus.common.safejson import TooDeep


class RagbusError(Exception):
    """Base of ragbus' own errors."""


class Retryable(RagbusError):
    """The work may succeed if tried again later."""


class DependencyUnavailable(Retryable):
    """A dependency (vector store, database, model server) cannot be reached right now."""


class PoisonMessage(RagbusError):
    """The message can never be processed; it belongs in the dead-letter topic."""


# Errors that mean "try again later". Adapters translate their libraries' outage errors (asyncpg's
# connection errors, openai's APIConnectionError, ...) into DependencyUnavailable, so this list is all
# the middleware needs; the builtins cover the standard library's own sockets and timeouts.
RETRYABLE: tuple[type[BaseException], ...] = (
    Retryable,
    ConnectionError,
    TimeoutError,  # asyncio.TimeoutError is the same class since Python 3.11
)

# Errors that mean the message itself is bad.
POISON: tuple[type[BaseException], ...] = (
    PoisonMessage,
    pydantic.ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    TooDeep,  # nested deeper than any event (ragbus.common.safejson)
)
