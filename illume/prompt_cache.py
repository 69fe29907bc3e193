"""The prompt cache: model states saved on disk, found again by the longest shared token prefix.

While it generates a reply the embedded backend saves here the state of
one sequence (the key/value cells of the prompt's tokens, no logits); the
next call on the same model restores the entry that shares the longest
prefix with its own prompt and evaluates only the rest.

Layout: `$XDG_CACHE_HOME/illume/prompts/MODELKEY/TOKENHASH.kv`, one folder
per model key (the model file's identity, the load options, the library
versions; `model_key`), one file per saved state. A file is

    header  MAGIC, FORMAT, model key, token count, state length, CRC-32
    tokens  the token ids, int32 little-endian
    state   llama.cpp's bytes for the sequence

Safety without a shared index: every change is one atomic step (a
temporary file renamed into place, or an unlink), so readers see a whole
entry or none, and two processes saving the same entry leave one of the
two whole copies. Entries are written and read through memory maps
(`Entry`, `load`); as no file is ever shortened in place, a mapped page
never loses its file. A file that is short, fails its CRC, or carries another
magic, format or key is removed and treated as a miss. Least recently used
entries (the file's mtime, touched on every hit) go first once the folder
passes its size limit; eviction holds a lock so two processes evicting at
once do not both delete for the same excess.
"""

import errno
import hashlib
import mmap
import os
import struct
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from illume.errors import SetupError

MAGIC = b"illumeKV"
FORMAT = 1
HEADER = struct.Struct("<8sI16sIQI")  # magic, format, model key, tokens, state bytes, crc32
SUFFIX = ".kv"
TEMPORARY = ".tmp-"
STALE_TEMPORARY = 3600  # seconds: a temporary file this old belongs to a process that died
DEFAULT_LIMIT = 2 * 1024**3
UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def folder(env: Mapping[str, str]) -> Path:
    """Return the cache's root folder: $XDG_CACHE_HOME/illume/prompts, else ~/.cache/illume/prompts."""
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "illume" / "prompts"


def size_limit(env: Mapping[str, str]) -> int:
    """Return the limit in bytes from $ILLUME_CACHE_SIZE (`2G`, `500M`, `0` = no cache); raise SetupError."""
    text = env.get("ILLUME_CACHE_SIZE", "").strip()
    if not text:
        return DEFAULT_LIMIT
    number, unit = text.rstrip("BbIi"), ""  # 2G, 2GB, 2GiB all mean 2 GiB
    if number and number[-1].upper() in UNITS:
        number, unit = number[:-1], number[-1].upper()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if value < 0 or value != value:
        raise SetupError(f"ILLUME_CACHE_SIZE: expected a size such as 2G, 500M or 0, got {text!r}")
    return int(value * UNITS[unit])


def model_key(path: Path, options: Mapping, versions: str) -> bytes:
    """Return the 16-byte key of a model loaded from PATH with OPTIONS by library VERSIONS.

    The file is known by what `stat` says of it: device, inode, size, mtime
    and ctime in nanoseconds. That costs one system call; any rewrite or
    replacement of the file changes the ctime at least, so a state is never
    restored into another model's weights. Hashing the whole file would read
    gigabytes at every start, and a hash of its header would miss weights
    changed under the same metadata. A copy of the same model elsewhere
    gets a key of its own: a miss, never a wrong reply.
    """
    s = os.stat(path)
    identity = f"{s.st_dev}:{s.st_ino}:{s.st_size}:{s.st_mtime_ns}:{s.st_ctime_ns}"
    text = "\n".join([f"format {FORMAT}", identity, versions, repr(sorted(options.items()))])
    return hashlib.sha256(text.encode()).digest()[:16]


def _token_bytes(tokens: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(tokens)}i", *tokens)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Return how many leading tokens A and B share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class Found:
    """An entry that shares `common` leading tokens with a prompt."""

    def __init__(self, path: Path, tokens: list[int], common: int, state_bytes: int, crc: int):
        self.path = path
        self.tokens = tokens
        self.common = common
        self.state_bytes = state_bytes
        self.crc = crc


class PromptCache:
    """The entries of one model key under ROOT, kept under LIMIT bytes in all."""

    def __init__(self, root: Path, key: bytes, limit: int):
        self.root = root
        self.key = key
        self.limit = limit
        self.dir = root / key.hex()

    def best(self, tokens: Sequence[int]) -> Found | None:
        """Return the entry sharing the longest prefix with TOKENS (the smaller one on a tie), or None."""
        try:
            names = [e.name for e in os.scandir(self.dir) if e.name.endswith(SUFFIX)]
        except OSError:
            return None
        best = None
        for name in names:
            found = self._header(self.dir / name, tokens)
            if found is None or found.common == 0:
                continue
            if best is None or (found.common, -len(found.tokens)) > (best.common, -len(best.tokens)):
                best = found
        return best

    def _header(self, path: Path, prompt: Sequence[int]) -> Found | None:
        """Return PATH's entry read up to its tokens; remove a short or foreign file and return None."""
        try:
            with open(path, "rb") as f:
                head = f.read(HEADER.size)
                if len(head) < HEADER.size:
                    raise ValueError("short header")
                magic, fmt, key, n_tokens, state_bytes, crc = HEADER.unpack(head)
                if magic != MAGIC or fmt != FORMAT or key != self.key:
                    raise ValueError("foreign entry")
                size = os.fstat(f.fileno()).st_size
                if size != HEADER.size + 4 * n_tokens + state_bytes or n_tokens == 0:
                    raise ValueError("truncated entry")
                raw = f.read(4 * n_tokens)
        except FileNotFoundError:
            return None  # removed by another process since the listing
        except (OSError, ValueError, struct.error):
            self._remove(path)
            return None
        tokens = list(struct.unpack(f"<{n_tokens}i", raw))
        return Found(path, tokens, common_prefix(tokens, prompt), state_bytes, crc)

    def load(self, found: Found) -> memoryview | None:
        """Return FOUND's state bytes, checked against its CRC; remove a damaged entry and return None.

        The bytes are the file's own pages, mapped copy-on-write (writable,
        as llama.cpp's loader asks, but never written back): no read into a
        fresh buffer first. Entries are replaced by a rename and removed by
        an unlink, never shortened in place, so the mapped pages stay there.
        """
        try:
            with open(found.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size != HEADER.size + 4 * len(found.tokens) + found.state_bytes:
                    raise ValueError("changed since its header was read")
                mapping = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self._remove(found.path)
            return None
        body = memoryview(mapping)[HEADER.size:]
        tokens = body[:4 * len(found.tokens)]
        if tokens != _token_bytes(found.tokens) or zlib.crc32(body) != found.crc:
            self._remove(found.path)
            return None
        try:
            os.utime(found.path)  # the least recently used go first
        except OSError:
            pass
        return body[len(tokens):]

    def remove(self, found: Found) -> None:
        """Remove FOUND: llama.cpp refused its state."""
        self._remove(found.path)

    def begin(self, tokens: Sequence[int], state_bytes: int) -> "Entry | None":
        """Return a new entry for TOKENS with room for STATE_BYTES of state, or None if there is nothing to save.

        None when the entry is larger than the whole cache (keeping it would
        evict everything for nothing) or already saved (the same tokens give
        the same state). Raise NotSaved with a note when the disk refuses it.
        """
        raw = _token_bytes(tokens)
        size = HEADER.size + len(raw) + state_bytes
        if size > self.limit:
            return None
        name = hashlib.sha256(raw).hexdigest()[:32] + SUFFIX
        try:
            os.utime(self.dir / name)
            return None
        except OSError:
            pass
        partial = self.dir / f"{TEMPORARY}{os.getpid()}-{name}.part"  # not a SUFFIX name: never listed
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _reserve(fd, size)
                mapping = mmap.mmap(fd, size)
            finally:
                os.close(fd)  # the mapping keeps the file open
        except OSError as e:
            self._remove(partial)
            raise NotSaved(_unsaved(e)) from None
        mapping[HEADER.size:HEADER.size + len(raw)] = raw
        return Entry(self, tokens, name, partial, mapping)

    def _drop_covered(self, tokens: Sequence[int], kept: str) -> None:
        """Remove this model's entries whose tokens all begin the ones just saved: the new entry serves them."""
        try:
            names = [e.name for e in os.scandir(self.dir) if e.name.endswith(SUFFIX) and e.name != kept]
        except OSError:
            return
        for name in names:
            found = self._header(self.dir / name, tokens)
            if found is not None and found.common == len(found.tokens):
                self._remove(found.path)

    def _evict(self) -> None:
        """Remove the least recently used entries, of any model, until the cache fits its limit."""
        import fcntl

        try:
            lock = os.open(self.root / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries, total, now = [], 0, time.time()
            for model in os.scandir(self.root):
                if not model.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(model.path):
                    try:
                        s = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if entry.name.startswith(TEMPORARY):
                        if now - s.st_mtime > STALE_TEMPORARY:
                            self._remove(Path(entry.path))
                        continue
                    total += s.st_size
                    entries.append((s.st_mtime, s.st_size, entry.path))
            entries.sort()
            for _, size, path in entries:
                if total <= self.limit:
                    break
                self._remove(Path(path))
                total -= size
        except OSError:
            pass
        finally:
            os.close(lock)  # closing releases the lock

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass


def _reserve(fd: int, size: int) -> None:
    """Give the file FD SIZE bytes with blocks behind them; raise OSError (ENOSPC) if the disk has no room.

    The space comes first: a full disk is an error here, where a page of a
    mapped file with no block behind it would kill the process (SIGBUS).
    Where the system has no posix_fallocate (macOS) or the file system
    refuses it, zeros are written, as glibc does for such file systems.
    """
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except AttributeError:
        pass
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    zeros = bytes(1024 * 1024)
    for offset in range(0, size, len(zeros)):
        os.pwrite(fd, zeros[:size - offset], offset)


class NotSaved(Exception):
    """The disk refused a new entry; the message is the note that says so."""


def _unsaved(error: OSError) -> str:
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    reason = "the disk is full" if full else (error.strerror or str(error))
    return f"the prompt cache could not save this reply's state ({reason}); the next call evaluates it again"


class Entry:
    """A new entry on its way into the cache: a temporary file, its space reserved and mapped.

    The state goes straight into the file's pages (`state`, where llama.cpp
    copies it), not through a buffer and a write: writing 56 MB to a new
    file took 0.14 s of CPU on ext4 here, copying into its mapped pages
    0.01 s more than the copy alone. `commit` adds the CRC and the header
    and renames the file into place.
    """

    def __init__(self, cache: PromptCache, tokens: Sequence[int], name: str, partial: Path, mapping: mmap.mmap):
        self._cache = cache
        self._tokens = tokens
        self._name = name
        self._partial = partial
        self._mapping = mapping
        self.state = memoryview(mapping)[HEADER.size + 4 * len(tokens):]

    def commit(self) -> str | None:
        """Seal the entry and put it in place; return a note saying why it could not be, or None."""
        cache = self._cache
        try:
            with memoryview(self._mapping) as whole:
                body = whole[HEADER.size:]
                crc = zlib.crc32(body)
                whole[:HEADER.size] = HEADER.pack(MAGIC, FORMAT, cache.key, len(self._tokens), len(self.state), crc)
                body.release()
            self._close()
            os.replace(self._partial, cache.dir / self._name)
        except OSError as e:
            self.abandon()
            return _unsaved(e)
        cache._drop_covered(self._tokens, self._name)
        cache._evict()
        return None

    def abandon(self) -> None:
        """Remove the unfinished entry."""
        self._close()
        PromptCache._remove(self._partial)

    def _close(self) -> None:
        self.state.release()
        self._mapping.close()
