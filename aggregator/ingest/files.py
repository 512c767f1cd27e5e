"""`file:` feeds: a configured local archive, read with the same body cap and a
304 when its mtime and size are unchanged. Never reached by a redirect."""

from __future__ import annotations

import mimetypes
import stat
import time
from email.utils import formatdate
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from aggregator.config.units import format_size
from aggregator.errors import FetchError
from aggregator.models import FeedState, Fetched


def get_file(state: FeedState, *, max_body: int, started: float) -> Fetched:
    """Read a configured local archive; fake a 304 when mtime and size are unchanged."""
    parts = urlsplit(state.url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError("file: URL must be file:///absolute/path", state.url)
    path = Path(url2pathname(parts.path))
    if not path.is_absolute():
        raise FetchError("file: URL must be file:///absolute/path", state.url)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FetchError(f"no such file: {path}", state.url) from None
    except OSError as e:
        raise FetchError(f"cannot read {path}: {e.strerror}", state.url) from None
    if not stat.S_ISREG(st.st_mode):
        raise FetchError(f"not a regular file: {path}", state.url)
    etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    last_modified = formatdate(st.st_mtime, usegmt=True)
    headers = {"etag": etag, "last-modified": last_modified}
    if state.etag == etag:
        return Fetched(
            url=state.url,
            final_url=state.url,
            permanent_url=None,
            status=304,
            body=b"",
            headers=headers,
            etag=etag,
            last_modified=last_modified,
            elapsed=time.monotonic() - started,
        )
    if st.st_size > max_body:
        raise FetchError(
            f"body exceeds {format_size(max_body)} cap ({st.st_size} bytes)", state.url
        )
    try:
        with open(path, "rb") as f:
            body = f.read(max_body + 1)
    except OSError as e:
        raise FetchError(f"cannot read {path}: {e.strerror}", state.url) from None
    if len(body) > max_body:  # grew since stat()
        raise FetchError(f"body exceeds {format_size(max_body)} cap", state.url)
    content_type = mimetypes.guess_type(path.name)[0]
    headers["content-length"] = str(len(body))
    if content_type:
        headers["content-type"] = content_type
    return Fetched(
        url=state.url,
        final_url=state.url,
        permanent_url=None,
        status=200,
        body=body,
        headers=headers,
        etag=etag,
        last_modified=last_modified,
        elapsed=time.monotonic() - started,
    )
