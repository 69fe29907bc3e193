"""The Jinja sandbox templates render in: the size of what a template makes is known before it is made.

A template can come with a cloned repository's profile, and Jinja's own
sandbox keeps it from Python's internals, not from the machine's memory:
`('a' * 1000)|replace('a', 'a' * 1000000)` makes a gigabyte in one call.
Here every operation that makes a value goes through the sandbox: the
operators (`*`, `+`, `%`, `**`, `~`), calls of methods and functions, the
filters, slices, the text of `{{ }}` and the join that ends a macro or a
block. Before it runs, each works out the size of what it will make from
the sizes of its inputs (`shape`: the characters `str()` would write, the
items of a collection) and is refused when that is over the limit. What
they all make adds up, in bytes, against a budget of BUDGET times the
limit, so that a loop cannot keep thousands of values that each pass on
their own. A method of Python's own types whose result the sandbox cannot
size is refused. Time is bounded too, MAX_SECONDS a render (`render`).
"""

import functools
import inspect
import re
import sys
import time
import types
from collections.abc import Mapping, Sized

import jinja2
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment, safe_range
from jinja2.utils import Cycler, Namespace, _PassArg, generate_lorem_ipsum

MAX_SECONDS = 2.0  # of rendering; a prompt template takes milliseconds
BUDGET = 4  # bytes a render may make in all, in times the limit (in characters) on one value
OBJECT = 64  # bytes of a new object (a string that `split` makes), beyond its characters or items
ITEM = 8  # bytes of an item of a list (what it holds is counted where that is made)
MAX_BITS = 4096  # of a number a template computes

_CHUNK = 1 << 16  # characters measured at a time: the repr of a big string is never made whole


class TooMuch(Exception):
    """A template went past the limit on a value, its budget, or MAX_SECONDS."""


class Bounds:
    """What one render may still make: no value over LIMIT characters or items, BUDGET times LIMIT bytes in all."""

    def __init__(self, limit: int, seconds: float = MAX_SECONDS):
        self.limit = limit
        self.budget = BUDGET * limit
        self.made = 0
        self.deadline = time.monotonic() + seconds

    def make(self, size: int, objects: int = 1, unit: int = 1, new: int | None = None) -> None:
        """Count a value of SIZE characters or items (UNIT bytes each), in OBJECTS new objects, about to be made.

        NEW is what is new in it, when not all of it is (`append` adds one
        item to a list). Raises TooMuch when the value is over the limit or
        the render goes past its budget or its time.
        """
        if size > self.limit:
            raise TooMuch(f"the template makes a value of more than {self.limit} characters")
        self.made += (size if new is None else new) * unit + OBJECT * objects
        if self.made > self.budget:
            raise TooMuch(f"the template makes more than {self.budget} bytes in all")
        self.on_time()

    def on_time(self) -> None:
        """Raise TooMuch once the render has run longer than it may."""
        if time.monotonic() > self.deadline:
            raise TooMuch(f"the template ran longer than {MAX_SECONDS:g} s")

    def check(self, value):
        """Return VALUE; raise TooMuch when it is over the limit (made by code that was sized otherwise)."""
        if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)) and len(value) > self.limit:
            raise TooMuch(f"the template makes a value of more than {self.limit} characters")
        return value


# --- sizes --------------------------------------------------------------------

class Shape:
    """How a value is written out: its characters (at least), the values in it, its depth, bytes a character."""

    __slots__ = ("chars", "nodes", "depth", "kind")

    def __init__(self, chars: int, nodes: int = 1, depth: int = 0, kind: int = 1):
        self.chars, self.nodes, self.depth, self.kind = chars, nodes, depth, kind


def shape(value, how=str) -> Shape:
    """Return the Shape of HOW(VALUE), HOW being str, repr or ascii, without making it.

    Inside a collection, strings are written as repr (or ascii) writes them.
    """
    seen: dict[int, Shape] = {}

    def walk(v, inner: bool) -> Shape:
        key = id(v)
        if key in seen:
            return seen[key]
        if isinstance(v, str):
            if not inner and how is str:
                return Shape(len(v), kind=_kind(v))
            extra = 0 if type(v) is str else 16  # Markup('...')
            found = Shape(_quoted_size(v, ascii if how is ascii else repr) + extra,
                          kind=1 if how is ascii else _kind(v))
        elif isinstance(v, (bytes, bytearray)):
            found = Shape(_quoted_size(v, repr) + 16)
        elif v is None or isinstance(v, bool):
            return Shape(5)
        elif isinstance(v, int):
            return Shape(v.bit_length() // 3 + 2)  # decimal digits and a sign, with room to spare
        elif isinstance(v, (float, complex)):
            return Shape(64)
        else:
            seen[key] = Shape(16)  # a collection inside itself is written `[...]`
            items = _contents(v)
            if items is None:
                try:
                    found = Shape(len(repr(v)))  # Jinja's own objects (a loop, a macro): short
                except Exception:
                    found = Shape(64)
            else:
                chars, nodes, depth, kind = 32, 1, 0, 1
                for item in items:
                    inside = walk(item, True)
                    chars += inside.chars + 4  # `, ` between items, `: ` in a mapping
                    nodes += inside.nodes
                    depth, kind = max(depth, inside.depth), max(kind, inside.kind)
                found = Shape(chars, nodes, depth + 1, kind)
        seen[key] = found
        return found

    return walk(value, False)


def text_size(value, how=str) -> int:
    """Return at least the length of HOW(VALUE), without making it."""
    if type(value) is str and how is str:
        return len(value)
    return shape(value, how).chars


def _contents(value):
    """Return what repr writes inside VALUE, a collection (a mapping's keys and values), or None for anything else."""
    if isinstance(value, Namespace):
        value = value._Namespace__attrs
    if isinstance(value, Mapping):
        return [part for pair in value.items() for part in pair]
    if isinstance(value, (list, tuple, set, frozenset, type({}.keys()), type({}.values()))):
        return value
    if isinstance(value, type({}.items())):
        return [part for pair in value for part in pair]
    return None


def _quoted_size(text, how) -> int:
    """Return at least len(HOW(TEXT)) for a string or bytes, measured a piece at a time."""
    quotes = text.count("'" if isinstance(text, str) else b"'")  # each may get a backslash
    return 3 + quotes + sum(len(how(text[at : at + _CHUNK])) - 2 for at in range(0, len(text), _CHUNK))


def _kind(text: str) -> int:
    """Return the bytes a character of TEXT takes in memory: 1, 2 or 4 (Python stores strings so)."""
    if text.isascii():
        return 1
    return max(1, (sys.getsizeof(text) - sys.getsizeof("\xe9") + 2) // (len(text) + 1))


def _unit(*values) -> int:
    """Return the bytes a character takes in a text made of VALUES: the widest of theirs."""
    widest = 1
    for value in values:
        if isinstance(value, str):
            widest = max(widest, _kind(value))
        elif not isinstance(value, (bytes, bytearray, int, float, type(None))):
            widest = max(widest, shape(value).kind)
    return widest


def _formatted_size(value) -> int:
    """Return at least the characters VALUE takes in a `%` or `{}` format, whatever the conversion."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return value.bit_length() + 4  # `{:b}` writes every bit
    if isinstance(value, float):
        return 330  # `%f` of 1e308
    return text_size(value, ascii)


_NUMBERS = re.compile(r"\d+")


def format_size(template, arguments) -> int:
    """Return at least the length of TEMPLATE (a `%` or `{}` format) filled with ARGUMENTS.

    Each field takes at most the biggest argument, widened by at most the
    biggest number in TEMPLATE or in ARGUMENTS (`%*d`, `{:{width}}`).
    """
    text = template if isinstance(template, str) else template.decode("latin-1")
    fields = text.count("%") + text.count("{")
    if not fields:
        return len(text)
    widest = max([int(n) for n in _NUMBERS.findall(text)] + [abs(a) for a in arguments if isinstance(a, int)],
                 default=0)
    biggest = max((_formatted_size(a) for a in arguments), default=0)
    return len(text) + fields * (biggest + widest)


def _format_arguments(right) -> list:
    """Return the values a `%` format may write out of its right side: itself, the items of a tuple, a mapping's."""
    found = [right]
    if isinstance(right, tuple):
        found += right
    elif isinstance(right, Mapping):
        found += right.values()
    return found


def _length(value) -> int:
    """Return the characters or items of VALUE as a filter or method sees it: str()'s for what has no length."""
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    return text_size(value)


def _count(text, what: str) -> int:
    """Return how many times WHAT is in TEXT (a string, or bytes); for another value, an upper bound."""
    if isinstance(text, str):
        return text.count(what)
    if isinstance(text, (bytes, bytearray)):
        return text.count(what.encode("latin-1"))
    return text_size(text)


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines splits
_SPACES = _LINE_BREAKS + "\t \x1f\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009" \
    "\u200a\u202f\u205f\u3000"  # where str.split() splits


def _lines(text) -> int:
    """Return at least the lines of TEXT (at least one)."""
    return 1 + sum(_count(text, c) for c in (_LINE_BREAKS if isinstance(text, str) else "\n\r\v\f\x1c\x1d\x1e"))


def _words(text) -> int:
    """Return at least the whitespace-separated pieces of TEXT (at least one)."""
    return 1 + sum(_count(text, c) for c in (_SPACES if isinstance(text, str) else " \t\n\r\v\f"))


def _items(value) -> int:
    """Return how many items iterating VALUE gives (characters of a string); 0 for what has no length."""
    return len(value) if isinstance(value, Sized) else 0


# --- methods of Python's own types --------------------------------------------
# Each sizer returns (size, objects, unit[, new]) for Bounds.make: what the call
# will make, from the value it is called on and its arguments.

_NOTHING = frozenset({  # calls that make nothing new: a number, a truth value, a value already made
    "count", "endswith", "find", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
    "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "rfind",
    "rindex", "startswith", "get", "keys", "values", "items", "pop", "popitem", "remove", "discard",
    "clear", "reverse", "sort", "isdisjoint", "issubset", "issuperset",
})


def _text_method(obj, name: str, args: list, kwargs: dict):
    """Return what str/bytes method NAME called on OBJ makes, for Bounds.make; None for a method it does not know."""
    n = len(obj)
    given = [*args, *kwargs.values()]
    grow = _grow(obj)
    unit = _unit(obj, *given)
    if name in ("lstrip", "rstrip", "strip", "removeprefix", "removesuffix", "striptags", "unescape"):
        return n, 1, unit
    if name in ("capitalize", "casefold", "lower", "upper", "swapcase", "title"):
        return 3 * n, 1, 4  # Unicode's case mappings make up to three characters of one, of any width
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args and isinstance(args[0], int) else 0
        return max(n, width), 1, unit
    if name == "expandtabs":
        size = kwargs.get("tabsize", args[0] if args else 8)
        return n + _count(obj, "\t") * max(size if isinstance(size, int) else 0, 0), 1, unit
    if name == "replace":
        old, new = (list(args) + [kwargs.get("old", ""), kwargs.get("new", "")])[:2]
        most = args[2] if len(args) > 2 else kwargs.get("count", -1)
        found = n + 1 if not old else obj.count(old) if _same_kind(obj, old) else 0
        if isinstance(most, int) and most >= 0:
            found = min(found, most)
        return n + found * max(0, grow * _length(new) - _length(old)), 1, unit
    if name in ("split", "rsplit", "splitlines"):
        sep = args[0] if args and name != "splitlines" else kwargs.get("sep")
        if name == "splitlines":
            pieces = _lines(obj)
        elif isinstance(sep, (str, bytes, bytearray)) and sep:
            pieces = 1 + obj.count(sep) if _same_kind(obj, sep) else 1
        else:
            pieces = _words(obj)
        return n + pieces, pieces + 1, unit
    if name in ("partition", "rpartition"):
        return n + grow * sum(_length(a) for a in given), 4, unit
    if name == "join":
        items = args[0] if args else []
        return sum(grow * _length(i) for i in items) + grow * n * max(len(items) - 1, 0), 1, _unit(obj, *items)
    if name == "encode":
        return 10 * n + 16, 1, 1  # `unicode_escape` writes `\U0001f600` for one character
    if name == "decode":
        return 4 * n + 16, 1, 1  # `backslashreplace` writes `\xff` for one byte
    if name == "hex":
        return 3 * n, 1, 1
    if name == "translate":
        table = args[0] if args else None
        values = table.values() if isinstance(table, Mapping) else table if isinstance(table, (list, tuple)) else ()
        longest = max([1, *(_length(v) for v in values if v is not None and not isinstance(v, int))])
        return n * longest, 1, 4
    return None


def _same_kind(text, part) -> bool:
    """Return whether PART can be looked for in TEXT: both strings (a Markup is one), or both bytes."""
    return isinstance(text, str) == isinstance(part, str) and isinstance(part, (str, bytes, bytearray))


def _collection_method(obj, name: str, args: list, kwargs: dict):
    """Return what list/dict/set method NAME called on OBJ makes, for Bounds.make; None for one it does not know."""
    n = len(obj)
    given = [*args, *kwargs.values()]
    if name in ("append", "insert", "add", "setdefault"):
        return n + 1, 0, ITEM, 1
    if name == "copy":
        return n, 1, ITEM
    if name in ("extend", "update", "intersection_update", "difference_update", "symmetric_difference_update"):
        added = sum(_items(a) for a in given) + len(kwargs)
        return n + added, 0, ITEM, added
    if name in ("union", "intersection", "difference", "symmetric_difference"):
        return n + sum(_items(a) for a in given), 1, ITEM
    return None


def _method_size(method, args: list, kwargs: dict):
    """Return what METHOD, of a value of Python's own types, makes, for Bounds.make; raise SecurityError if unknown."""
    obj, name = method.__self__, method.__name__
    found = None
    if name in _NOTHING:
        found = 0, 0
    elif isinstance(obj, (str, bytes, bytearray)):
        found = _text_method(obj, name, args, kwargs)
    elif isinstance(obj, (list, dict, set, frozenset, tuple)):
        found = _collection_method(obj, name, args, kwargs)
    elif isinstance(obj, int) and name == "to_bytes":
        length = args[0] if args else kwargs.get("length", 1)
        found = (length if isinstance(length, int) else 0), 1
    elif isinstance(obj, (int, float)):
        found = 0, 0  # a number, or two: `bit_length`, `as_integer_ratio`, a float's `hex`
    if found is None:
        owner = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        raise SecurityError(f"a template cannot call {owner}.{name}: illume cannot bound its result")
    return found


# Methods that go through an iterable argument once: it is made a list first, so that its size is known.
_TAKES_ITERABLE = frozenset({"join", "extend", "update", "union", "intersection", "difference",
                             "symmetric_difference", "intersection_update", "difference_update",
                             "symmetric_difference_update"})
_VALUE_TYPES = (str, bytes, bytearray, list, dict, set, frozenset, tuple, int, float)


def _value_method(obj) -> bool:
    """Return whether OBJ is a method of a value of Python's own types (`'a'.replace`, a Markup's), or of the type."""
    if not isinstance(obj, (types.BuiltinMethodType, types.MethodType)):
        return False
    owner = getattr(obj, "__self__", None)
    return isinstance(owner, _VALUE_TYPES) or owner in _VALUE_TYPES


def _grow(*values) -> int:
    """Return how many times longer a text gets when one of VALUES is a Markup: it escapes the rest (`<`: `&lt;`)."""
    return 5 if any(isinstance(v, str) and type(v) is not str for v in values) else 1


# --- filters --------------------------------------------------------------------
# Each sizer takes the filter's arguments by name, the value filtered as
# `value`, and returns (size, objects) of what the filter will make. TEXT
# filters make a text (a character takes the bytes of the widest given);
# the others make collections.

def _text_of(a) -> int:
    return _length(a["value"])


def _replace(a):
    value, old, new, count = a["value"], a.get("old", ""), a.get("new", ""), a.get("count")
    n, old_size = _length(value), _length(old)
    if isinstance(value, str) and isinstance(old, str):
        found = value.count(old) if old else n + 1
    else:
        found = n // max(old_size, 1) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return n + found * max(0, _length(new) - old_size), 1


def _indent(a):
    width = a.get("width", 4)
    prefix = width if isinstance(width, int) else _length(width)
    return _text_of(a) + 1 + _lines(a["value"]) * max(prefix, 0), 1


def _wordwrap(a):
    wrap = a.get("wrapstring")
    n = _text_of(a)
    return n + (n + 1) * (1 if wrap is None else _length(wrap)), 1


def _urlize(a):
    # Each word may become `<a href="WORD" rel="..." target="...">WORD</a>`, escaped.
    extra = _length(a.get("rel") or "") + _length(a.get("target") or "") + 64
    return 10 * _text_of(a) + _words(a["value"]) * extra, 1


def _join(a):
    items, d = a["value"], a.get("d", "")
    return sum(_length(i) for i in items) + _length(d) * max(len(items) - 1, 0), 1


def _format(a):
    return format_size(str(a["value"]), [*a.get("args", ()), *a.get("kwargs", {}).values()]), 1


def _tojson(a):
    found = shape(a["value"])
    indent = a.get("indent")
    step = indent if isinstance(indent, int) else _length(indent or "")
    separators = a.get("separators")
    between = sum(_length(s) for s in separators) if isinstance(separators, (list, tuple)) else 4
    # `\ud83d\ude00` for one character; each value on a line of its own, indented, when asked.
    return 12 * found.chars + found.nodes * (max(step, 0) * (found.depth + 1) + 1 + between), 1


def _pprint(a):
    found = shape(a["value"], repr)
    # A long string is cut in pieces, each on a line of its own; every line indented by at most the depth.
    return found.chars + (found.nodes + found.chars) * (found.depth + 4), 1


def _collection(a, objects_per_item: int = 0):
    value = a["value"]
    n = _items(value)
    if isinstance(value, str):
        objects_per_item = 1  # a string's characters become strings of their own
    return n, 1 + objects_per_item * n


def _batch(a):
    count = a.get("linecount", 1)
    count = count if isinstance(count, int) and count > 0 else 1
    n = _items(a["value"])
    return n + count, n // count + 2


def _slice(a):
    slices = a.get("slices", 1)
    slices = slices if isinstance(slices, int) and slices > 0 else 1
    return _items(a["value"]) + slices, slices + 1


def _sum(a):
    return _items(a.get("start", 0)) + sum(_items(i) for i in a["value"]), 1


def _nothing(a):
    return 0, 0  # a number, a truth value, or a value already made


def _times(factor: int):
    return lambda a: (factor * _text_of(a), 1)


_TEXT_FILTERS = {
    "capitalize": _times(3), "lower": _times(3), "upper": _times(3), "title": _times(3),
    "e": _times(5), "escape": _times(5), "forceescape": _times(5),
    "safe": _times(1), "string": _times(1), "striptags": _times(1), "trim": _times(1),
    "truncate": lambda a: (_text_of(a) + _length(a.get("end", "...")), 1),
    "center": lambda a: (max(_text_of(a), a.get("width", 80) if isinstance(a.get("width", 80), int) else 0), 1),
    "reverse": _times(1),  # of a string; of a collection, below
    "replace": _replace, "indent": _indent, "wordwrap": _wordwrap, "urlize": _urlize,
    "urlencode": lambda a: (12 * _text_of(a) + 16, 1), "xmlattr": lambda a: (5 * _text_of(a) + 16, 1),
    "join": _join, "format": _format, "tojson": _tojson, "pprint": _pprint,
}
_OTHER_FILTERS = {
    "abs": _nothing, "attr": _nothing, "count": _nothing, "d": _nothing, "default": _nothing,
    "filesizeformat": _nothing, "first": _nothing, "float": _nothing, "int": _nothing, "last": _nothing,
    "length": _nothing, "max": _nothing, "min": _nothing, "random": _nothing, "round": _nothing,
    "wordcount": _nothing,
    "list": _collection, "sort": _collection, "reverse": _collection, "unique": _collection, "map": _collection,
    "select": _collection, "reject": _collection, "selectattr": _collection, "rejectattr": _collection,
    "dictsort": functools.partial(_collection, objects_per_item=1),
    "items": functools.partial(_collection, objects_per_item=1),
    "groupby": functools.partial(_collection, objects_per_item=2),
    "batch": _batch, "slice": _slice, "sum": _sum,
}
# Filters that go through their value whole: an iterator given to them is made a list first, its size then known.
_TAKES_ALL = frozenset({"join", "list", "sort", "reverse", "unique", "map", "select", "reject", "selectattr",
                        "rejectattr", "dictsort", "groupby", "batch", "slice", "sum", "first", "last", "min",
                        "max", "length", "count", "random", "items"})
_PASSED = ("context", "eval_ctx", "environment", "env")  # what Jinja hands some filters before the value


def _listed(value):
    """Return VALUE, made a list if it is an iterator (its items are made already, or counted as they are)."""
    if isinstance(value, (str, bytes, bytearray, Sized, Mapping)) or not hasattr(value, "__iter__"):
        return value
    return list(value)


def _bounded_filter(name: str, function, passes: bool, bounds_of):
    """Return the filter NAME, FUNCTION, counting what it will make on the render's Bounds (BOUNDS_OF()) first.

    PASSES: Jinja hands FUNCTION a context or an environment before the value.
    """
    at = 1 if passes else 0  # where the value is in the arguments

    read = []  # the signature, read when the filter is first used: all of them would cost each render milliseconds

    @functools.wraps(function)
    def bounded(*args, **kwargs):
        if not read:
            signature = inspect.signature(function)
            shown = list(signature.parameters)
            read.extend((signature, 1 if passes and not (shown and shown[0] in _PASSED) else 0))  # passed, not shown
        signature, hidden = read
        bounds = bounds_of()
        _check_numbers(bounds, args[at + 1 :], kwargs)
        args = list(args)
        if name in _TAKES_ALL and len(args) > at:
            args[at] = _listed(args[at])
        named = dict(signature.bind(*args[hidden:], **kwargs).arguments)
        values = [v for k, v in named.items() if k not in _PASSED]
        named["value"] = values[0] if values else None
        if isinstance(named["value"], str) and name in _TEXT_FILTERS:
            sizer, unit = _TEXT_FILTERS[name], _unit(*values)
        elif name in _OTHER_FILTERS:
            sizer, unit = _OTHER_FILTERS[name], ITEM
        elif name in _TEXT_FILTERS:
            sizer, unit = _TEXT_FILTERS[name], 4  # text made from a collection: characters of any width
        else:
            raise SecurityError(f"illume cannot bound what the filter {name} makes")
        bounds.make(*sizer(named), unit=unit)
        return bounds.check(function(*args, **kwargs))

    return bounded


def _check_numbers(bounds: Bounds, args, kwargs) -> None:
    """Raise TooMuch for a number given to a call that is bigger than the limit (`center(500000000)`)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > bounds.limit:
            raise TooMuch(f"the template passes {value}, more than the {bounds.limit} allowed")


def _lipsum_size(a) -> int:
    """Return at least the characters of `lipsum(n, html, min, max)`: N paragraphs of at most MAX words."""
    n, longest = a.get("n", 5), a.get("max", 100)
    n = n if isinstance(n, int) else 0
    longest = longest if isinstance(longest, int) else 0
    return max(n, 0) * (max(longest, 0) * 20 + 32)


def _binop_size(operator: str, left, right):
    """Return what LEFT OPERATOR RIGHT makes, for Bounds.make; raise TooMuch for a number too large."""
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_BITS:
                raise TooMuch("the template computes a number too large")
            return 0, 0
        for sized, times in ((left, right), (right, left)):
            if isinstance(sized, Sized) and isinstance(times, int):
                return len(sized) * max(times, 0), 1, _unit(sized) if isinstance(sized, str) else ITEM
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                and right * max(abs(left), 2).bit_length() > MAX_BITS:
            raise TooMuch("the template computes a number too large")
    elif operator == "+":
        if isinstance(left, Sized) and isinstance(right, Sized):
            unit = _unit(left, right) if isinstance(left, str) else ITEM
            return _grow(left, right) * (len(left) + len(right)), 1, unit
    elif operator == "%" and isinstance(left, (str, bytes)):
        arguments = _format_arguments(right)
        return _grow(left) * format_size(left, arguments), 1, _unit(left, *arguments)
    return 0, 0


# --- the environment --------------------------------------------------------------

def environment(limit: int, immutable: bool = False, filters: Mapping | None = None, **options):
    """Return a sandboxed Jinja environment whose templates make nothing past LIMIT (see the module's docstring).

    IMMUTABLE: lists and dicts cannot be changed (as transformers renders
    chat templates). FILTERS are added to Jinja's own and bounded as they
    are, by name (a `tojson` of one's own is sized as Jinja's). OPTIONS go
    to Jinja (`trim_blocks`, `extensions`; undefined names are errors
    unless `undefined` says otherwise). Render with `render`.
    """
    class Generator(CodeGenerator):
        def visit_Concat(self, node, frame):
            # `a ~ b` cannot be intercepted like `+`: it is joined through a sized join.
            self.write("environment.sized_join((")
            for argument in node.nodes:
                self.visit(argument, frame)
                self.write(", ")
            self.write("))")

    class Bounded(ImmutableSandboxedEnvironment if immutable else SandboxedEnvironment):
        code_generator_class = Generator
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def start(self, limit: int) -> None:
            """Begin a render that may make nothing past LIMIT."""
            self.bounds = Bounds(limit)

        def call_binop(self, context, operator, left, right):
            if operator == "%" and isinstance(left, str):
                _check_numbers(self.bounds, [int(n) for n in _NUMBERS.findall(left)], {})  # `%0999999999d`
            self.bounds.make(*_binop_size(operator, left, right))
            return self.bounds.check(super().call_binop(context, operator, left, right))

        def call(__self, __context, __obj, *args, **kwargs):
            bounds = __self.bounds
            _check_numbers(bounds, args, kwargs)
            if getattr(__obj, "sized", False) is True or __obj is safe_range:
                bounds.on_time()  # sized already (a string's format), or made as it is gone through (range)
            elif _value_method(__obj):
                if __obj.__name__ in _TAKES_ITERABLE and args:
                    args = (_listed(args[0]), *args[1:])
                bounds.make(*_method_size(__obj, list(args), kwargs))
            elif __obj is dict or __obj is Namespace or __obj is Cycler:
                bounds.make(sum(_items(a) for a in args) + len(kwargs), unit=4 * ITEM)
            elif __obj is generate_lorem_ipsum:
                bounds.make(_lipsum_size(inspect.signature(__obj).bind(*args, **kwargs).arguments))
            # Anything else is a macro or one of Jinja's own objects (a loop's `cycle`), whose
            # work goes through the sandbox too, or a function illume gives the render.
            return bounds.check(super().call(__context, __obj, *args, **kwargs))

        def getitem(self, obj, argument):
            if isinstance(argument, slice) and isinstance(obj, Sized):
                self.bounds.make(len(range(len(obj))[argument]), unit=_unit(obj) if isinstance(obj, str) else ITEM)
            return super().getitem(obj, argument)

        def wrap_str_format(self, value):
            wrapped = super().wrap_str_format(value)
            if wrapped is None:
                return None
            template, bounds = value.__self__, self.bounds

            @functools.wraps(wrapped)
            def sized(*args, **kwargs):
                given = [*args, *kwargs.values()]
                if value.__name__ == "format_map" and args and isinstance(args[0], Mapping):
                    given = list(args[0].values())
                bounds.make(_grow(template) * format_size(template, given), unit=_unit(template, *given))
                return wrapped(*args, **kwargs)

            sized.sized = True
            return sized

        def sized_join(self, values):
            self.bounds.make(sum(text_size(v) for v in values), unit=_unit(*values))
            return jinja2.runtime.str_join(values)

        def concat(self, pieces):
            # The end of a macro, a `{% set %}` or a `{% filter %}` block: what its body wrote, joined.
            pieces = list(pieces)
            self.bounds.make(sum(len(p) for p in pieces), unit=_unit(*pieces))
            return "".join(pieces)

    def finalize(value):
        # `{{ value }}`: str() of anything but a string makes a new text.
        if not isinstance(value, str):
            found = shape(value)
            made.bounds.make(found.chars, unit=found.kind)
        return value

    made = Bounded(**{"undefined": jinja2.StrictUndefined, "autoescape": False, **options}, finalize=finalize)
    made.start(limit)  # compiling folds constants, through the same bounds
    made.filters.update(filters or {})
    for name, function in list(made.filters.items()):
        passes = _PassArg.from_obj(function) is not None
        made.filters[name] = _bounded_filter(name, function, passes, lambda: made.bounds)
    return made


def render(template, limit: int, **values) -> str:
    """Return TEMPLATE (from an `environment`) rendered with VALUES, within LIMIT and MAX_SECONDS.

    Time is watched line by line in the template's own code (a trace on
    its frames only), so that loops that make nothing still stop, and in
    every operation the sandbox sizes.
    """
    environment = template.environment
    environment.start(limit)
    bounds = environment.bounds

    def on_line(frame, event, arg):
        bounds.on_time()
        return on_line

    def on_call(frame, event, arg):
        return on_line if frame.f_code.co_filename == "<template>" else None

    pieces, size = [], 0
    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        for piece in template.generate(**values):
            size += len(piece)
            if size > limit:
                raise TooMuch(f"the template's prompt is over {limit} characters")
            pieces.append(piece)
    finally:
        sys.settrace(previous)
    return "".join(pieces)
