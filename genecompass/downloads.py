"""Reference files named in the config: a local path, or {url, sha256[, path]} downloaded and verified.

``download_target`` (which file a config entry stands for) is what the workflow plans with, so this
module imports nothing beyond the standard library.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from genecompass.errors import InputError
from genecompass.utils import atomic_output

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20

_ENTRY_KEYS = ("url", "sha256", "path")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URL_SCHEMES = ("http", "https", "ftp", "file")


def _expected_digest(sha256, where) -> str | None:
    if sha256 is None or sha256 == "":
        return None
    digest = str(sha256).strip().lower()
    if not _SHA256.match(digest):
        raise InputError(where, "sha256", f"not a SHA-256 digest: {sha256!r}",
                         "give the 64 hexadecimal characters printed by `sha256sum FILE`")
    return digest


def sha256_of(path: str | os.PathLike) -> str:
    """Hexadecimal SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: str | os.PathLike, sha256: str | None = None, timeout: float = 60) -> Path:
    """Download `url` (http, https, ftp or file) to `dest` and return `dest`.

    The data are streamed to a temporary file beside `dest` and renamed only
    once complete and, when `sha256` is given, verified; a failed or
    interrupted download leaves nothing under `dest` (an older `dest` stays).
    """
    dest = Path(dest)
    expected = _expected_digest(sha256, url)
    fix_url = "check the URL and your network connection, or download the file by hand and give its local path"
    try:
        with atomic_output(dest) as tmp:
            digest = hashlib.sha256()
            n_bytes = 0
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                announced = response.headers.get("Content-Length") if response.headers else None
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    n_bytes += len(chunk)
            if announced is not None and announced.isdigit() and int(announced) != n_bytes:
                raise InputError(url, "url", f"download truncated: got {n_bytes} of {announced} bytes",
                                 "retry the download")
            actual = digest.hexdigest()
            if expected is not None and actual != expected:
                raise InputError(url, "sha256",
                                 f"checksum mismatch: expected {expected}, got {actual}",
                                 "check that the URL points at the intended release and update the "
                                 "sha256 in the configuration only if the new file is the one you want")
    except InputError:
        raise
    except urllib.error.HTTPError as exc:
        raise InputError(url, "url", f"download failed: HTTP {exc.code} {exc.reason}", fix_url) from None
    except urllib.error.URLError as exc:
        raise InputError(url, "url", f"download failed: {exc.reason}", fix_url) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise InputError(url, "url", f"download failed: {type(exc).__name__}: {exc}", fix_url) from None
    except ValueError as exc:  # urllib: "unknown url type"
        raise InputError(url, "url", f"cannot download: {exc}",
                         f"use a URL starting with one of {', '.join(s + '://' for s in _URL_SCHEMES)}") from None
    logger.info("downloaded %s -> %s (%d bytes, sha256 %s)", url, dest, n_bytes, actual)
    return dest


def _entry_fields(entry: Mapping) -> tuple[str | None, str | None, str | None]:
    """(url, sha256, path) of a mapping entry, validated."""
    unknown = [key for key in entry if key not in _ENTRY_KEYS]
    where = entry.get("url") or entry.get("path")
    if unknown:
        raise InputError(where, str(unknown[0]), f"unknown key(s) {unknown} in a reference entry",
                         f"use only {', '.join(_ENTRY_KEYS)}")
    url = entry.get("url") or None
    path = entry.get("path") or None
    if url is None and path is None:
        raise InputError(None, "url", "a reference entry has neither 'url' nor 'path'",
                         "give {url: ..., sha256: ...} or a local path")
    if url is not None:
        url = str(url)
        if urllib.parse.urlparse(url).scheme not in _URL_SCHEMES:
            raise InputError(url, "url", "not a downloadable URL",
                             f"use a URL starting with one of {', '.join(s + '://' for s in _URL_SCHEMES)}")
    sha256 = _expected_digest(entry.get("sha256"), url or path)
    return url, sha256, (str(path) if path is not None else None)


def _url_basename(url: str) -> str:
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if not name:
        raise InputError(url, "url", "the URL does not end in a file name",
                         "give a URL to a file, or set 'path' to a local copy")
    return name


def download_target(entry, cache_dir: str | os.PathLike) -> str:
    """The file a config entry stands for, for a Snakemake rule's input or output.

    A local path string is returned unchanged (nothing to download); a mapping
    whose `path` exists gives that path; otherwise the download goes to
    `cache_dir/<basename of url>`. Does not download anything.
    """
    if isinstance(entry, (str, os.PathLike)):
        return str(entry)
    if isinstance(entry, Mapping):
        url, _, path = _entry_fields(entry)
        if path is not None and (url is None or Path(path).exists()):
            return path  # a local copy (offline); nothing to download
        return str(Path(cache_dir) / _url_basename(url))
    raise _unsupported_entry(entry)


def _unsupported_entry(entry) -> InputError:
    return InputError(None, "references", f"unsupported reference entry {entry!r}",
                      "give a local path or a mapping {url: ..., sha256: ..., path: optional local copy}")


def resolve_reference(entry, cache_dir: str | os.PathLike, timeout: float = 60) -> Path:
    """Local file for a config entry, downloading it into `cache_dir` when needed.

    `entry` is a local path (must exist) or a mapping ``{url, sha256, path}``:
    an existing `path` is used as is (offline; not re-hashed); otherwise the
    file is `cache_dir/<basename of url>`, reused when present and matching
    `sha256`, else downloaded with `fetch`.
    """
    if isinstance(entry, (str, os.PathLike)):
        text = str(entry)
        if urllib.parse.urlparse(text).scheme in _URL_SCHEMES and "://" in text:
            raise InputError(text, "path", "a URL was given where a local path is expected",
                             "write the entry as {url: ..., sha256: ...} to have it downloaded")
        path = Path(entry)
        if not path.exists():
            raise InputError(path, "path", "reference file not found",
                             "check the path in the configuration, or give {url: ..., sha256: ...} "
                             "to download it")
        return path
    if not isinstance(entry, Mapping):
        raise _unsupported_entry(entry)
    url, sha256, path = _entry_fields(entry)
    if path is not None and Path(path).exists():
        return Path(path)
    if url is None:
        raise InputError(path, "path", "reference file not found",
                         "check the path, or add a 'url' (and 'sha256') to download it")
    if path is not None:
        logger.info("local copy %s not found; downloading %s", path, url)
    if sha256 is None:
        # Nothing downloaded is used unverified.
        raise InputError(url, "sha256", "a downloaded reference needs its checksum",
                         "add sha256: <the 64 hexadecimal characters of `sha256sum FILE`> to this entry "
                         "(from the provider, or from a copy you trust), or give a local path instead")
    target = Path(cache_dir) / _url_basename(url)
    if target.exists():
        if sha256 is None or sha256_of(target) == sha256:
            return target
        logger.warning("%s does not match its sha256; downloading it again", target)
    return fetch(url, target, sha256=sha256, timeout=timeout)
