"""The harness's end of a served run: the proxies the tests call, and what the solution's replies may cost here.

A `Session` holds one run's Channel. A `Remote` (a name or object in the sandbox) sends calls, attribute reads
and truth tests there; values cross as tagged JSON (`sandbox_codec.Encoder`/`Decoder`, the codec both sides
use) and come back as plain Python values built here. Call semantics survive the split: containers keep their
identity within a call (f(a, a) gets one list twice; a result that is an argument is the test's own object), and
the arguments' state after the call is written back into the test's objects. A lazy result (a generator, a map)
comes back as a `RemoteIterator` read on demand; an iterator the test passes is pulled by the sandbox item by
item. An exception comes back as the first of its classes this process has (builtins, or a standard-library
module the harness imported), never as an iteration-ending StopIteration.

Limits on this side: a reply decodes to at most WEIGHT_CAP nodes with every alias counted at each use (so no
comparison, repr or loop over it costs more), with a cap on hash collisions, Decimal exponents, Fraction sizes
and range lengths; decoding and the harness's own work between calls count against the run's deadline. A
broken channel (timeout, garbage, an oversized value) fails the run even when a test's `except` swallowed it.
"""

from __future__ import annotations

import reprlib
import sys
from collections import deque
from typing import Any

from actors.verifier.channel import Channel, OutputLimit, SandboxClosed, SandboxTimeout
from actors.verifier.sandbox_codec import Decoder, Encoder, TooLarge, check_keys

WEIGHT_CAP = 1 << 21  # nodes one reply may stand for, aliases expanded (a legit [[0] * 1000] * 1000 is 1M)
CHANNEL_ERRORS = (SandboxTimeout, SandboxClosed, OutputLimit)
_MALFORMED = (ValueError, TypeError, ArithmeticError, KeyError, IndexError, RecursionError)


class RemoteError(Exception):
    """The solution raised an exception this process has no class for (or one that would end an iteration)."""


class TestError(Exception):
    """The tests cannot run as written (a name nobody defines, a value that cannot cross): not the solution's fault."""

    __test__ = False  # not a pytest class


class Session:
    """The harness's end of one run's channel."""

    def __init__(self, ch: Channel):
        self.ch = ch
        self.pulls: list[Any] = []  # iterators the tests passed, pulled by the sandbox
        self.failed: Exception | None = None  # the channel's first failure: it decides the run
        self.test_error: TestError | None = None
        self.write_back = True  # ask for the arguments' state after each call (False: the tests never look)

    def check(self) -> None:
        """Raise the run's failure, if any (also one a test swallowed), or SandboxTimeout past the deadline."""
        if self.failed is not None:
            raise self.failed
        try:
            self.ch.check()
        except SandboxTimeout as e:
            self.failed = e
            raise

    def request(self, msg: dict) -> dict:
        """Send a request and return its reply, answering the sandbox's pulls meanwhile."""
        self.check()
        try:
            self.ch.send(msg)
            while True:
                reply = self.ch.recv()
                if "pull" not in reply:
                    return reply
                self._answer_pull(reply["pull"])
        except CHANNEL_ERRORS as e:
            self.failed = self.failed or e
            raise

    def _answer_pull(self, n: Any) -> None:
        if type(n) is not int or not 0 <= n < len(self.pulls):
            raise SandboxClosed("the program pulled from an iterator it was not given")
        try:
            item = next(self.pulls[n])
        except StopIteration:
            return self.ch.send({"stop": True})
        except (*CHANNEL_ERRORS, TestError):
            raise
        except Exception as e:  # the test's own iterator raised: the solution sees it raised there
            return self.ch.send({"raise": [type(e).__name__, str(e)[:500]]})
        self.ch.send({"item": self.encoder()(item)})

    def encoder(self) -> Encoder:
        return Encoder(self._other)

    def _other(self, x: Any) -> dict:
        """The form of an argument that is not plain data: a handle the sandbox gave, or an iterator to pull."""
        if type(x) is Remote and type(x._target) is int:
            return {"$ref": x._target}
        if type(x) is RemoteIterator and not x._buf and x._end is None:
            return {"$ref": x._ref}
        if hasattr(type(x), "__next__") and hasattr(type(x), "__iter__"):
            self.pulls.append(x)
            return {"$iter": len(self.pulls) - 1}
        self.test_error = TestError(f"the tests pass a {type(x).__name__}, which cannot cross to the sandbox")
        raise self.test_error

    def decode(self, build: Any) -> Any:
        """build(decoder factory): a reply's value. A malformed value breaks the channel, an oversized one is
        OutputLimit; either fails the run."""
        try:
            return build(lambda seed=(): Decoder(self._handle, self._iterator, seed, WEIGHT_CAP, self.check))
        except CHANNEL_ERRORS as e:
            self.failed = self.failed or e
            raise
        except TooLarge as e:
            err: Exception = OutputLimit(str(e))
        except _MALFORMED as e:
            err = SandboxClosed(f"malformed value: {type(e).__name__}: {e}"[:300])
        self.failed = self.failed or err
        raise err

    def _handle(self, n: int) -> Remote:
        return Remote(self, n)

    def _iterator(self, n: int) -> RemoteIterator:
        return RemoteIterator(self, n)

    def simple(self, msg: dict) -> Any:
        reply = self.request(msg)
        if "ok" not in reply:
            raise remote_exception(reply.get("raise"))
        return self.decode(lambda dec: dec()(reply["ok"]))

    def call(self, target: str | int, args: tuple, kwargs: dict) -> Any:
        enc = self.encoder()
        msg = {"op": "call", "target": target, "args": enc(tuple(args)), "kwargs": enc(tuple(kwargs.items())),
               "back": self.write_back}
        seed = enc.keep  # the arguments' containers, numbered as the sandbox numbers them
        reply = self.request(msg)
        if "ok" not in reply:
            raise remote_exception(reply.get("raise"))
        return self.decode(lambda dec: _result(dec(seed), reply, seed))


def _result(dec: Decoder, reply: dict, seed: list) -> Any:
    """The call's value; the arguments' state after it is written into the test's own objects."""
    states = reply.get("args") or []
    if type(states) is not list or any(type(s) is not list or len(s) != 2 or type(s[0]) is not int
                                       or not 0 <= s[0] < len(seed) for s in states):
        raise ValueError("malformed argument states")
    new = [(seed[i], dec.pairs(v) if isinstance(seed[i], dict) else dec.items(v)) for i, v in states]
    value = dec(reply["ok"])
    for x, items in new:
        if type(x) is list:
            x[:] = items
        elif isinstance(x, dict):
            x.clear()
            x.update(dict(check_keys(items, [k for k, _ in items])))
        else:
            x.clear()
            x.update(check_keys(items, items))
    if dec.shared or new:
        weigh((value, *seed), WEIGHT_CAP)
    return value


def weigh(x: Any, cap: int) -> int:
    """The size of `x` with every alias counted at each use (what comparing, printing or walking it costs);
    TooLarge past `cap`, ValueError for a cycle."""
    memo: dict[int, int] = {}
    active: set[int] = set()

    def w(y: Any) -> int:
        t = type(y)
        if t is str or t is bytes:
            return 1 + (len(y) >> 6)
        if t is int:
            return 1 + (y.bit_length() >> 9)
        if t is range:
            return 1 + len(y)
        if not isinstance(y, list | tuple | set | frozenset | dict) and t.__name__ not in ("dict_keys", "dict_values",
                                                                                         "dict_items"):
            return 1
        if id(y) in memo:
            return memo[id(y)]
        if id(y) in active:
            raise ValueError("a cyclic value cannot cross")
        active.add(id(y))
        total = 1
        for v in (z for kv in y.items() for z in kv) if isinstance(y, dict) else y:
            total += w(v)
            if total > cap:
                raise TooLarge("the value is larger than the harness decodes")
        active.discard(id(y))
        memo[id(y)] = total
        return total

    return w(x)


class Remote:
    """A name or object that lives in the sandbox. Calls, attribute reads and truth tests go there (their results
    come back as plain data); comparisons never do, so it equals nothing but itself."""

    __slots__ = ("_s", "_target")

    def __init__(self, s: Session, target: str | int):
        self._s, self._target = s, target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._s.call(self._target, args, kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self._s.simple({"op": "getattr", "target": self._target, "attr": attr})

    def __repr__(self) -> str:
        return f"<sandboxed object {self._target!r}>"

    def __bool__(self) -> bool:  # e.g. a re.Match; asked there, as returning that bool would be
        return self._s.simple({"op": "bool", "target": self._target}) is True


class RemoteIterator:
    """A lazy iterator (a generator, a map, ...) the solution returned: items are read from the sandbox as the
    test asks for them, a few more each time (never more than 2 ms of the sandbox's work ahead)."""

    def __init__(self, s: Session, ref: int):
        self._s, self._ref, self._buf, self._end, self._n = s, ref, deque(), None, 1
        self._done = False

    def __iter__(self) -> RemoteIterator:
        return self

    def __next__(self) -> Any:
        if not self._buf and self._end is None and not self._done:
            reply = self._s.request({"op": "next", "target": self._ref, "n": self._n})
            self._n = min(2 * self._n, 256)
            self._s.decode(lambda dec: self._take(dec(), reply))
            if reply.get("stop") is True:
                self._done = True
            elif "raise" in reply:
                self._end = remote_exception(reply["raise"])
        if self._buf:
            return self._buf.popleft()
        if self._end is not None:
            e, self._end, self._done = self._end, None, True
            raise e
        raise StopIteration

    def _take(self, dec: Decoder, reply: dict) -> None:
        items = reply.get("items", [])
        self._buf.extend(dec.items(items))
        if not items and reply.get("stop") is not True and "raise" not in reply:
            raise ValueError("an empty batch that does not end the iterator")
        if dec.shared:
            weigh(tuple(self._buf), WEIGHT_CAP)

    def __repr__(self) -> str:
        return f"<sandboxed iterator {self._ref}>"


def remote_exception(info: Any) -> Exception:
    """The exception to raise here for one the solution raised: the first of its classes (most derived first)
    that is a builtin or belongs to a standard-library module this process has imported, made anew with the
    message; else RemoteError. Never StopIteration or StopAsyncIteration: one of those would end the test's
    own loop (`all(map(...))`) as if the data had run out."""
    if type(info) is not list or len(info) < 2:
        return RemoteError("malformed reply")
    name, text = str(info[0])[:100], str(info[1])[:500]
    classes = info[2] if len(info) > 2 and type(info[2]) is list else [["builtins", name]]
    for entry in classes[:16]:
        cls = _known_class(entry)
        if cls is None:
            continue
        if issubclass(cls, StopIteration | StopAsyncIteration):
            break
        try:
            return cls(text)
        except Exception:  # noqa: BLE001 (its __init__ wants other arguments: made without it)
            e = cls.__new__(cls)
            e.args = (text,)
            return e
    return RemoteError(f"{name}: {text}")


def _known_class(entry: Any) -> type | None:
    if type(entry) is not list or len(entry) != 2 or not all(type(s) is str for s in entry):
        return None
    module, qualname = entry
    if module != "builtins" and module.partition(".")[0] not in sys.stdlib_module_names:
        return None
    obj: Any = sys.modules.get(module)  # never imported on the solution's word
    for part in qualname.split("."):
        if obj is None or not part.isidentifier():
            return None
        obj = vars(obj).get(part) if hasattr(obj, "__dict__") else None  # no module __getattr__ hooks
    if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == module:
        return obj
    return None


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 80, 80, 80
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxfrozenset = _SHORT.maxdict = 8


def short_repr(x: Any) -> str:
    """A bounded repr of a value from the sandbox, for a verdict's detail."""
    try:
        return _SHORT.repr(tuple(x) if isinstance(x, tuple) else x)[:200]
    except Exception:  # noqa: BLE001 (an int past the str limit, ...)
        return f"<{type(x).__name__}>"
