"""Plain data across the sandbox boundary: the tagged JSON both sides speak (the harness in the verifier's
process, actors/verifier/harness.py; the serving program in the sandbox, actors/verifier/sandbox_boot.py).

Standard library only: it is mounted into the sandbox beside the boot file (compiled by the sandbox's python).
Decoding has budgets (nodes, big-int digits, Decimal exponents, Fraction sizes, range lengths, new namedtuple
types, hash collisions), so a compact reply cannot make the trusted side do unbounded work.
"""

import _json  # the C half of json: no `re` import (json itself costs ~9 ms of startup in the sandbox)
import binascii
import sys

BIG_INT_BITS = 8000  # a longer int crosses as hex: JSON's decimal form stops at 4300 digits (and costs n² to read)
_VIEWS = ("dict_keys", "dict_values", "dict_items")
_NTUPLES = {}  # (name, fields) -> the namedtuple class this process made for them


class TooLarge(ValueError):
    """A value that would decode to more than the decoder's budget."""


def _exact(t, module, name):
    m = sys.modules.get(module)
    return m is not None and t is getattr(m, name, None)


def _mapping(t):
    return t is dict or any(_exact(t, "collections", n) for n in ("Counter", "OrderedDict", "defaultdict"))


class Encoder:
    """Values as tagged JSON, one message per encoder. Exact types only: a subclass of int/list/... is not plain
    data and goes to `other(x)` (a handle; None: TypeError). Mutable containers (list, set, dict) are numbered in
    the order they are met, after `seed` (the request's, when answering it); meeting one again gives
    {"$same": n}, so aliasing crosses: f(a, a), a result that is an argument or holds one twice."""

    def __init__(self, other=None, seed=()):
        self.other, self.keep = other, list(seed)  # keep: ids stay unique while the encoder lives
        self.ids = {id(o): n for n, o in enumerate(self.keep)}

    def __call__(self, x):
        t = type(x)
        if x is None or t is bool or t is str:
            return x
        if t is int:
            return x if x.bit_length() <= BIG_INT_BITS else {"$int": hex(x)}
        if t is float:
            return x if x == x and x not in (float("inf"), float("-inf")) else {"$float": repr(x)}
        if t is list or t is set or _mapping(t):
            if id(x) in self.ids:
                return {"$same": self.ids[id(x)]}
            self.ids[id(x)] = len(self.keep)
            self.keep.append(x)
            return self.state(x) if t is list else {"$set" if t is set else "$dict": self.state(x)}
        if t is tuple or t is frozenset:
            return {"$" + t.__name__: [self(v) for v in x]}
        if t is bytes:
            return {"$bytes": binascii.b2a_base64(x, newline=False).decode()}
        if t is complex or t is range:
            return {"$" + t.__name__: [self(v) for v in ((x.real, x.imag) if t is complex else (x.start, x.stop, x.step))]}
        if _exact(t, "fractions", "Fraction"):
            return {"$fraction": [self(x.numerator), self(x.denominator)]}
        if _exact(t, "decimal", "Decimal"):
            return {"$decimal": str(x)}
        if t.__name__ in _VIEWS and t.__module__ == "builtins":
            return {"$" + t.__name__: [[self(k), self(v)] for k, v in x] if t.__name__ == "dict_items"
                    else [self(v) for v in x]}
        if isinstance(x, tuple) and type(getattr(t, "_fields", None)) is tuple:  # a namedtuple: its data only
            return {"$ntuple": [t.__name__, list(t._fields), [self(v) for v in tuple.__iter__(x)]]}
        if self.other is None:
            raise TypeError(f"{t.__name__} is not plain data")
        return self.other(x)

    def state(self, x):
        """The contents of container `x`: its form once numbered, and what a call left in an argument."""
        if type(x) is list or type(x) is set:
            return [self(v) for v in x]
        return [[self(k), self(v)] for k, v in dict.items(x)]


class Decoder:
    """Tagged JSON to values, plain types only, one message per decoder (numbered as by Encoder, after `seed`).
    `ref(n)`, `it(n)`: what {"$ref": n} and {"$iter": n} stand for. `budget`: the most nodes the message may
    decode to (strings, bytes and ints count by length / 64, a range by its length), TooLarge beyond; `tick()`
    runs every 4096 nodes (the harness's deadline). A $same to a container still being built (a cycle) is
    refused; `shared` says one was met twice (then only a walk of the whole value weighs it)."""

    def __init__(self, ref=None, it=None, seed=(), budget=1 << 62, tick=None):
        self.ref, self.it, self.tick, self.left = ref, it, tick, budget
        self.objs, self.shared, self.nodes, self.types = list(seed), False, 0, 0

    def spend(self, w):
        self.left -= w
        if self.left < 0:
            raise TooLarge("the value is larger than the harness decodes")
        self.nodes += 1
        if self.tick is not None and not self.nodes & 4095:
            self.tick()

    def __call__(self, o):
        t = type(o)
        self.spend(1 + (len(o) >> 6) if t is str else 1)
        if o is None or t is bool or t is int or t is float or t is str:
            return o
        if t is list:
            return self.build("$list", o)
        if t is not dict or len(o) != 1:
            raise ValueError("malformed value")
        (tag, v), = o.items()
        if tag in ("$set", "$dict"):
            return self.build(tag, v)
        if tag == "$same":
            if type(v) is not int or not 0 <= v < len(self.objs) or self.objs[v] is None:
                raise ValueError("malformed or cyclic $same")
            self.shared = True
            return self.objs[v]
        if tag in ("$ref", "$iter"):
            f = self.ref if tag == "$ref" else self.it
            if f is None or type(v) is not int:
                raise ValueError(f"malformed {tag}")
            return f(v)
        if tag in ("$int", "$bytes", "$decimal", "$float"):
            if type(v) is not str:
                raise ValueError(f"malformed {tag}")
            self.spend(len(v) >> 6)
            return _scalar(tag, v)
        if tag == "$ntuple":
            return self.ntuple(v)
        return _compound(tag, self.pairs(v) if tag == "$dict_items" else self.items(v), self)

    def build(self, tag, payload):
        """A numbered container: its number is taken before its contents, as the encoder gives it."""
        n = len(self.objs)
        self.objs.append(None)
        if tag == "$dict":
            pairs = self.pairs(payload)
            x = dict(check_keys(pairs, [k for k, _ in pairs]))
        else:
            x = self.items(payload)
            x = set(check_keys(x, x)) if tag == "$set" else x
        self.objs[n] = x
        return x

    def items(self, v):
        if type(v) is not list:
            raise ValueError("malformed value")
        return [self(x) for x in v]

    def pairs(self, v):
        if type(v) is not list or any(type(p) is not list or len(p) != 2 for p in v):
            raise ValueError("malformed dict items")
        return [(self(k), self(x)) for k, x in v]

    def ntuple(self, v):
        if type(v) is not list or len(v) != 3 or type(v[0]) is not str or type(v[1]) is not list:
            raise ValueError("malformed $ntuple")
        name, fields, items = v[0], tuple(v[1]), self.items(v[2])
        if len(fields) != len(items) or len(fields) > 255 or any(type(f) is not str for f in fields):
            raise ValueError("malformed $ntuple")
        cls = _NTUPLES.get((name, fields))
        if cls is None:
            self.types += 1
            if self.types > 16:  # a class costs ~0.1 ms to make
                raise TooLarge("too many namedtuple types in one value")
            from collections import namedtuple

            if len(_NTUPLES) > 256:
                _NTUPLES.clear()
            cls = _NTUPLES[(name, fields)] = namedtuple(name, fields)  # ValueError: a name that is no identifier
        return cls._make(items)


def check_keys(x, keys):
    """`x`, unless many of the `keys` (of a set or dict to be) share one hash: n of those cost n² to insert."""
    if len(keys) > 32:
        counts = {}
        for k in keys:
            h = hash(k)
            counts[h] = c = counts.get(h, 0) + 1
            if c > 32:
                raise TooLarge("too many keys with one hash")
    return x


def _scalar(tag, v):
    if tag == "$int":
        return int(v, 16)
    if tag == "$bytes":
        return binascii.a2b_base64(v.encode())
    if tag == "$float":
        if v not in ("nan", "inf", "-inf"):
            raise ValueError("malformed $float")
        return float(v)
    from decimal import Decimal

    x = Decimal(v)
    if x.is_finite() and not -100000 <= x.as_tuple().exponent <= 100000:  # int(x) would be 10^5 digits and more
        raise TooLarge("a Decimal exponent beyond 10^5")
    return x


def _compound(tag, items, d):
    if tag == "$tuple":
        return tuple(items)
    if tag == "$frozenset":
        return frozenset(check_keys(items, items))
    if tag == "$dict_items":
        return dict(check_keys(items, [k for k, _ in items])).items()
    if tag == "$dict_keys":
        return dict.fromkeys(check_keys(items, items)).keys()
    if tag == "$dict_values":
        return dict(enumerate(items)).values()
    if tag == "$complex" and len(items) == 2 and all(type(x) in (int, float) for x in items):
        return complex(*items)
    if tag not in ("$range", "$fraction") or len(items) != (3 if tag == "$range" else 2) or \
            any(type(x) is not int for x in items):
        raise ValueError(f"malformed value for tag {tag!r}")
    if tag == "$range":
        r = range(*items)
        try:
            d.spend(len(r))  # what a loop over it or list(r) costs
        except OverflowError:
            raise TooLarge("a range too long") from None
        return r
    if max(items[0].bit_length(), items[1].bit_length()) > 1 << 16:  # normalising is a gcd: n² in the digits
        raise TooLarge("a Fraction beyond 2^65536")
    from fractions import Fraction

    return Fraction(*items)


# ---------------------------------------------------------------- the two modes

class _ScanContext:  # what _json.make_scanner reads from a json.JSONDecoder
    strict, object_hook, object_pairs_hook = True, None, None
    parse_float, parse_int, parse_constant = float, int, float


def loads(text: str):
    obj, end = _json.make_scanner(_ScanContext())(text, 0)
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return obj


def dumps(obj) -> str:
    return "".join(_json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",", False, False,
                                      False)(obj, 0))
