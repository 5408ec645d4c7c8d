"""Download a file with a published checksum, and unpack tar archives without path traversal.

A download streams into a temporary file beside ``dest`` while hashing it; only when the
checksum matches is it renamed onto ``dest`` (``os.replace``, atomic on one file system), so an
interrupted or tampered download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from cnnlab.errors import DataError

CHUNK_BYTES = 1 << 20


def stream_to_file(url: str, file, timeout: float) -> dict[str, str]:
    """Copy the response body of ``url`` into ``file``; returns its md5 and sha256 digests."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(CHUNK_BYTES):
                file.write(chunk)
                md5.update(chunk)
                sha256.update(chunk)
    except urllib.error.HTTPError as error:
        raise DataError(f"{url}: download failed with HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise DataError(f"{url}: download failed ({reason}); check the network or "
                        "download the file by hand and pass --data-root") from None
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def check_digests(url: str, actual: dict[str, str], expected: dict[str, str | None]) -> None:
    """DataError with expected and actual values when a given checksum differs."""
    for kind, want in expected.items():
        if want is not None and actual[kind] != want.lower():
            raise DataError(f"{url}: {kind} checksum mismatch: expected {want.lower()}, got "
                            f"{actual[kind]}; the download is corrupt or was altered")


def download(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60,
) -> Path:
    """Fetch ``url`` (http/https) into ``dest``, verifying ``md5``/``sha256`` when given.

    Example:
        >>> download("https://example.org/a.gz", Path("a.gz"), md5="...")  # doctest: +SKIP
    """
    if not url.startswith(("http://", "https://")):
        raise DataError(f"{url}: only http:// and https:// downloads are supported")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as file:
            actual = stream_to_file(url, file, timeout)
            file.flush()
            os.fsync(file.fileno())
        check_digests(url, actual, {"md5": md5, "sha256": sha256})
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def unsafe_member_reason(member: tarfile.TarInfo) -> str | None:
    """Why a tar entry must not be extracted (absolute, '..', link, device), or None."""
    parts = PurePosixPath(member.name).parts
    if member.name.startswith(("/", "\\")) or ".." in parts or ":" in member.name:
        return "path escapes the destination"
    if not (member.isfile() or member.isdir()):
        return "links and special files are not extracted"
    return None


def extract_tar_safely(archive: Path, dest: Path) -> None:
    """Unpack regular files and folders of ``archive`` into ``dest``; refuse path traversal."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                reason = unsafe_member_reason(member)
                if reason is not None:
                    raise DataError(f"{archive}: refusing entry '{member.name}' ({reason})")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{archive}: cannot extract ({error})") from None
