"""Which programming language an infill buffer is written in, from every signal it gives.

The stopping rules (illume.stopping) read code differently per language, and
a wrong language can make them cut a good middle, so a weak guess is no
guess.  The signals, strongest first:

1. hints: `!language NAME`, the editor's file name (`--file-name`, which may
   be a `&filetype` name such as `cpp` or `javascript`), a `!context` file's
   name.  `language_of` turns any one of them into a language;
2. the buffer's own word: a shebang (`#!/usr/bin/env node`) or a Vim or
   Emacs modeline (`vim: ft=c`, `-*- mode: python -*-`) in its first or
   last five lines;
3. the code itself: distinctive lines counted over the whole buffer.  The
   guess stands only when one language leads clearly.

A hint the code clearly contradicts (a `.py` name on a buffer of C) is
unsure too: the rules then treat the language as unknown.
"""

import re
from collections.abc import Sequence
from functools import lru_cache

# Languages whose stopping rules know their syntax.  Others are still named
# (a `.rs` file is not guessed to be C) but get only the rules that hold for
# any code.
RULED = ("python", "c", "javascript")

# Which ruled language's lexing a language shares (strings, comments,
# brackets, regex literals).
FAMILY = {
    "python": "python",
    "c": "c", "cpp": "c", "objc": "c",
    "javascript": "javascript", "typescript": "javascript",
}

# File-name extensions (lower case).
EXTENSIONS = {
    "py": "python", "pyi": "python", "pyw": "python",
    "c": "c", "h": "c",
    "js": "javascript", "mjs": "javascript", "cjs": "javascript", "jsx": "javascript",
    "ts": "typescript", "tsx": "typescript", "mts": "typescript", "cts": "typescript",
    "cc": "cpp", "cpp": "cpp", "cxx": "cpp", "c++": "cpp", "hh": "cpp", "hpp": "cpp", "hxx": "cpp", "h++": "cpp",
    "ino": "cpp", "m": "objc", "mm": "objc",
    "go": "go", "rs": "rust", "java": "java", "kt": "kotlin", "kts": "kotlin", "scala": "scala",
    "cs": "cs", "swift": "swift", "zig": "zig", "d": "d", "dart": "dart",
    "rb": "ruby", "pl": "perl", "pm": "perl", "php": "php", "lua": "lua", "r": "r", "jl": "julia",
    "sh": "sh", "bash": "sh", "zsh": "sh", "fish": "fish", "ps1": "ps1",
    "el": "lisp", "lisp": "lisp", "scm": "scheme", "clj": "clojure", "hs": "haskell", "ml": "ocaml",
    "ex": "elixir", "exs": "elixir", "erl": "erlang", "vim": "vim", "sql": "sql",
    "html": "html", "htm": "html", "css": "css", "scss": "css", "xml": "xml", "json": "json",
    "yaml": "yaml", "yml": "yaml", "toml": "toml", "ini": "ini", "md": "markdown", "rst": "rst",
    "txt": "text", "tex": "tex",
}

# Language names as !language, Vim's &filetype, Emacs' modes and shebang
# interpreters spell them, beyond the names above.
NAMES = {
    "python3": "python", "python2": "python", "py": "python", "pypy": "python", "pypy3": "python",
    "js": "javascript", "js2": "javascript", "node": "javascript", "nodejs": "javascript",
    "javascriptreact": "javascript", "deno": "javascript", "bun": "javascript",
    "ts": "typescript", "typescriptreact": "typescript",
    "c++": "cpp", "cplusplus": "cpp", "objective-c": "objc", "objcpp": "objc",
    "bash": "sh", "zsh": "sh", "dash": "sh", "ksh": "sh", "shell": "sh",
    "golang": "go", "emacs-lisp": "lisp", "plaintext": "text", "fundamental": "text",
}
_KNOWN = set(EXTENSIONS.values())


def language_of(hint: str | None) -> str | None:
    """Return the language a hint names (a language name or a file name), or None when it names none.

    >>> language_of("src/main.c"), language_of("cpp"), language_of("Python")
    ('c', 'cpp', 'python')
    """
    if not hint or not hint.strip():
        return None
    name = hint.strip().lower()
    for mode in ("-ts-mode", "-mode"):  # Emacs major modes: c-mode, js2-mode, python-ts-mode
        if name.endswith(mode) and name != mode:
            name = name[: -len(mode)]
            break
    if name in _KNOWN:
        return name
    if name in NAMES:
        return NAMES[name]
    base = re.split(r"[/\\]", name)[-1]
    if "." in base.strip("."):
        return EXTENSIONS.get(base.rsplit(".", 1)[-1])
    if name in EXTENSIONS:  # a bare extension: `!language rs`
        return EXTENSIONS[name]
    return None


_VIM_MODELINE = r"(?:^|\s)(?:vi|vim|Vim|ex):\s*(?:set?\s+)?(?:[^:\n]*?[\s:])?(?:ft|filetype|syn|syntax)=([\w.+-]+)"
_EMACS_MODELINE = r"(?i)-\*-\s*(?:(?:.*?;\s*)?mode:\s*([\w+-]+)[^\n]*?|([\w+-]+)\s*)-\*-"
_SHEBANG = r"#!\s*(\S+)(.*)"


def own_word(text: str) -> str | None:
    """Return the language a shebang or modeline in TEXT names, or None."""
    lines = text.split("\n")
    if lines and lines[0].startswith("#!"):
        match = re.match(_SHEBANG, lines[0])  # None for a bare `#!`
        program = match.group(1).rsplit("/", 1)[-1] if match else ""
        if match and program == "env":  # `#!/usr/bin/env -S node --flag`: the first word that is not an option
            program = next((word for word in match.group(2).split() if not word.startswith("-")), "")
        language = language_of(re.sub(r"[\d.]+$", "", program)) or language_of(program)
        if language:
            return language
    for line in lines[:5] + lines[-5:]:
        for pattern in (_VIM_MODELINE, _EMACS_MODELINE):
            match = re.search(pattern, line)
            if match:
                language = language_of(next(group for group in match.groups() if group))
                if language:
                    return language
    return None


# What only one of the ruled languages writes, with weights.  "braces" is
# what C and JavaScript share and Python never writes; it tells Python from
# the other two, and the "c" and "javascript" features then tell those
# apart.  C's `const` and `static` say nothing against JavaScript: only a C
# type after them does.
_C_TYPE = r"(?:void|char|short|int|long|float|double|signed|unsigned|bool|size_t|ssize_t|FILE|u?int\d+_t|\w+_t)"
_FEATURES = {
    "python": [
        (3, r"^[ \t]*(?:async[ \t]+)?def[ \t]+\w+[ \t]*\(.*\)[ \t]*(?:->.*)?:[ \t]*(?:#.*)?$"),
        (3, r"^[ \t]*class[ \t]+\w+[ \t]*(?:\(.*\))?[ \t]*:[ \t]*(?:#.*)?$"),
        (3, r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import[ \t]|import[ \t]+[\w.]+(?:[ \t]+as[ \t]+\w+)?[ \t]*$)"),
        (2, r"^[ \t]*(?:elif[ \t].*|else|try|finally|except\b.*)[ \t]*:[ \t]*(?:#.*)?$"),
        (2, r"^[ \t]*(?:if|for|while|with)[ \t][^{};]*:[ \t]*(?:#.*)?$"),
        (2, r"^[ \t]*(?:pass|raise\b.*|return[ \t]+None|del[ \t].*)[ \t]*$|\bis[ \t]+(?:not[ \t]+)?None\b|\blambda\b"),
        (1, r"\bself\.\w"),
        (1, r"\b(?:None|True|False)\b|\b(?:len|isinstance|print)\("),
        (1, r"^[ \t]*(?:[rbuf]?\"\"\"|[rbuf]?\'\'\')|^[ \t]+#[ \t]"),
    ],
    "braces": [
        (1, r";[ \t]*(?://.*|/\*.*)?$"),
        (1, r"\)[ \t]*\{[ \t]*$|\b(?:else|do|try|finally)[ \t]*\{|=>[ \t]*\{"
            r"|^[ \t]*\}[ \t]*(?:else|catch|finally|while)\b"),
        (1, r"^[ \t]*//|/\*"),
        (1, r"&&|\|\||\w\+\+|\+\+\w|[(=,][ \t]*!\w"),
    ],
    "c": [
        (3, r"^#[ \t]*(?:include[ \t]*[<\"]|define[ \t]+\w|ifn?def[ \t]+\w|endif\b|pragma[ \t]|undef[ \t])"),
        (2, r"^#(?:if|elif|else)\b"),
        (2, r"^[ \t]*(?:(?:static|extern|const|volatile|register|inline|unsigned|signed|struct|enum|union)[ \t]+)*"
            + _C_TYPE + r"\b[ \t*]+\**[ \t]*\w+[ \t]*(?:[;=\[,)]|\()"),
        (2, r"\btypedef\b|\w->\w|\bgoto[ \t]+\w+;"
            r"|\((?:const[ \t]+)?(?:unsigned[ \t]+)?(?:struct[ \t]+)?\w+[ \t]*\*+\)"),
        (1, r"\b(?:NULL|sizeof)\b|\bstruct[ \t]+\w+|[(,=][ \t]*&[A-Za-z_]"),
        (1, r"^\{[ \t]*$"
            r"|\b(?:[fs]?n?printf|[cm]alloc|realloc|free|mem(?:cpy|set|cmp|move)|str(?:n?cmp|n?cpy|len|chr|dup))\("),
    ],
    "javascript": [
        (3, r"\bfunction\b[ \t]*\*?[ \t]*[\w$]*[ \t]*\("),
        (3, r"\brequire\([ \t]*['\"`]|\bmodule\.exports\b|^[ \t]*exports\.[\w$]+[ \t]*="),
        (3, r"^[ \t]*import[ \t].*\bfrom[ \t]+['\"]|^[ \t]*import[ \t]+['\"]"
            r"|^[ \t]*export[ \t]+(?:default|const|let|function|class|async|\{)"),
        (3, r"^[ \t]*['\"]use strict['\"]"),
        (2, r"=>|\$\{"),
        (2, r"^[ \t]*(?:const|let|var)[ \t]+(?:[\w$]+[ \t]*=|[{\[])"),
        (2, r"(?<![=!<>])[!=]==(?!=)"),
        (2, r"\bconsole\.\w+\(|\bawait[ \t]+[\w$.]+\(.*\)[ \t;]*$"),
        (1, r"\b(?:undefined|null|typeof|instanceof)\b|\bthis\.[\w$]|\bnew[ \t]+[A-Z][\w$]*\("),
        (1, r"\.(?:then|forEach|push|indexOf|hasOwnProperty|toLowerCase|toUpperCase|startsWith|endsWith|includes)\("),
    ],
}


@lru_cache(maxsize=None)
def _compiled() -> dict[str, list[tuple[int, re.Pattern[str]]]]:
    """Return the features compiled, once, on first use: `illume --stop-rules` starts fast."""
    return {
        name: [(weight, re.compile(pattern, re.M)) for weight, pattern in features]
        for name, features in _FEATURES.items()
    }

# A guess stands when the leader scores at least MIN_SCORE and at least
# twice the runner-up: first Python against C and JavaScript together, then
# C against JavaScript on their own features.
MIN_SCORE = 6
MIN_APART = 3
_MOST = 10  # matches counted per feature: one line of prose repeated cannot outvote the code
_SAMPLE = 200_000  # characters read from each end of a long buffer
_LONGEST_LINE = 1000


# Docstrings and comments hold prose and examples (`digitSum("") => 0`),
# not the code's own syntax: emptied before counting, their marks kept.
# An unclosed one runs to the end, which keeps the search linear.
_PROSE = r'"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)|/\*[\s\S]*?(?:\*/|\Z)|//[^\n]*'


def _emptied(match: re.Match[str]) -> str:
    mark = match.group()[:2]
    return {'""': '""""""', "''": "", "/*": "/**/", "//": "//"}[mark]


def scores(text: str) -> dict[str, int]:
    """Return {"python", "braces", "c", "javascript": score} for the code in TEXT."""
    if len(text) > 2 * _SAMPLE:
        text = text[:_SAMPLE] + "\n" + text[-_SAMPLE:]
    text = re.sub(_PROSE, _emptied, text)
    # Minified code and data lines say little, and would make the line patterns slow.
    text = "\n".join(line for line in text.split("\n") if len(line) <= _LONGEST_LINE)
    return {
        name: sum(weight * min(len(pattern.findall(text)), _MOST) for weight, pattern in features)
        for name, features in _compiled().items()
    }


def guess_from_code(text: str, least: int = MIN_SCORE) -> tuple[str | None, str | None]:
    """Return (the ruled language the code in TEXT is clearly written in, its family), None for either unknown."""
    score = scores(text)
    python = score["python"]
    braces = score["braces"] + score["c"] + score["javascript"]
    if python >= least and python >= 2 * braces:
        return "python", "python"
    if braces < least or braces < 2 * python:
        return None, None
    c, javascript = score["c"], score["javascript"]
    if c >= MIN_APART and c >= 2 * javascript:
        return "c", "braces"
    if javascript >= MIN_APART and javascript >= 2 * c:
        return "javascript", "braces"
    return None, "braces"


def guess_language(hints: str | Sequence[str | None] | None, text: str = "") -> str | None:
    """Return the buffer's language (a name such as "c", "typescript", "rust"), or None when unsure.

    HINTS is one hint or a sequence of them, strongest first (None and
    unrecognised ones are skipped); TEXT is the buffer (prefix + suffix).
    """
    if hints is None or isinstance(hints, str):
        hints = [hints]
    named = next((language for language in map(language_of, hints) if language), None) or own_word(text)
    if named is None:
        return guess_from_code(text)[0]
    if named in FAMILY:
        # A name is trusted unless the code leans the other way, even weakly.
        own = FAMILY[named]
        language, family = guess_from_code(text, MIN_APART)
        if language not in (None, own) or family not in (None, "python" if own == "python" else "braces"):
            return None
    return named
