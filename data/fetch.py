"""Fetching a dataset's archives: resumable HTTPS downloads, the Kaggle and torchvision clients, checksums, disk space.

    remote = head(url)                                   # size and published MD5, before any byte is fetched
    check_space([Need(downloads, remote.size, "download"), Need(root.parent, unpacked, "unpacked")], "cct20")
    http_download(url, downloads / "x.tar.gz", remote)   # x.tar.gz.partial, resumed with Range, renamed when verified

An HTTPS download goes to `<file>.partial`, continues from where it stopped with a Range request (If-Range: the
ETag, so a file changed on the server starts over), retries a cut connection, and is renamed to `<file>` only when
its size and the MD5 the server publishes (Content-MD5, or Google Cloud's x-goog-hash) match; a mismatch removes the
partial file and names both sums. Kaggle archives are fetched by the official kaggle package (its own resume marker
`<file>.kaggle-partial`), torchvision's by torchvision's downloaders (their URLs and MD5s). Every expected failure
(no credentials, rules not accepted, no network, no space) is one DownloadError line saying what to do.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common import errors
from data.sources import KAGGLE_COMPETITION, KAGGLE_DATASET, Archive, kaggle_page, size_text

USER_AGENT = "imagenet-transfer data.download (python urllib)"
TIMEOUT = 60                 # seconds without a byte before a connection counts as cut
RETRY_DELAYS = (0, 5, 30)    # seconds before each retry of a cut download (it resumes where it stopped)
CHUNK = 1 << 20
KAGGLE_TOKEN_PAGE = "https://www.kaggle.com/settings/api"


class DownloadError(errors.DataError, RuntimeError):
    """A download that cannot go on: the message names the file or source, the reason and the way out."""


class Unreachable(DownloadError):
    """A server that cannot be reached (no network, a refused or dropped connection): a download retries it."""


def one_line(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------- HTTPS


@dataclass(frozen=True)
class Remote:
    """What a server says about a file before any of its bytes are fetched."""
    size: int | None
    md5: str | None      # hex digest the server publishes (Content-MD5 or x-goog-hash), if any
    etag: str | None


def published_md5(headers: Any) -> str | None:
    """The MD5 a response publishes: Content-MD5 (base64), or Google Cloud Storage's `x-goog-hash: md5=...`."""
    encoded = headers.get("Content-MD5")
    for part in (headers.get("x-goog-hash") or "").split(","):
        if part.strip().startswith("md5="):
            encoded = part.strip()[4:]
    try:
        return base64.b64decode(encoded, validate=True).hex() if encoded else None
    except ValueError:
        return None


def open_url(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})}, method=method)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: the server answered {error.code} {error.reason}; check the URL "
                            f"(or --mirror) and rerun") from None
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise Unreachable(f"{url}: cannot connect ({one_line(reason)}); check the network (or --mirror) and rerun, "
                          f"downloads resume where they stopped") from None


def head(url: str) -> Remote:
    """The size, published MD5 and ETag of `url`, from a HEAD request."""
    with open_url(url, method="HEAD") as response:
        length = response.headers.get("Content-Length")
        return Remote(int(length) if length else None, published_md5(response.headers), response.headers.get("ETag"))


def partial_path(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def http_download(url: str, target: Path, remote: Remote, retries: int = len(RETRY_DELAYS)) -> dict[str, str]:
    """Fetch `url` into `target` through `<target>.partial`, resuming it; verify size and MD5; then rename.
    Returns the file's MD5 and SHA-256 when the server published an MD5 to check (else {})."""
    partial = partial_path(target)
    partial.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        have = partial.stat().st_size if partial.exists() else 0
        if remote.size is not None and have >= remote.size:
            if have == remote.size:
                break
            partial.unlink()  # longer than the file on the server: not a prefix of it
            have = 0
        try:
            receive(url, partial, have, remote)
            break
        except (OSError, http.client.HTTPException, Unreachable) as error:
            got = partial.stat().st_size if partial.exists() else 0
            where = f"{size_text(got)} of {size_text(remote.size) if remote.size else '?'}"
            if attempt == retries:
                raise DownloadError(f"{target.name}: download cut after {where} ({one_line(error)}); rerun the same "
                                    f"command to resume from {partial}") from None
            print(f"{target.name}: connection cut after {where} ({one_line(error)}); resuming", flush=True)
            time.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
    size = partial.stat().st_size
    if remote.size is not None and size != remote.size:
        raise DownloadError(f"{partial}: {size:,} bytes, the server announced {remote.size:,}; rerun to resume")
    checked = {}
    if remote.md5 is not None:
        checked = verify(partial, {"md5": remote.md5}, f"the MD5 published by {url.split('/')[2]}", target.name)
    os.replace(partial, target)
    return checked


def receive(url: str, partial: Path, have: int, remote: Remote) -> None:
    """One GET of `url` appended to `partial` from byte `have` (the whole file when the server ignores Range)."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    if have and remote.etag:
        headers["If-Range"] = remote.etag  # a changed file comes back whole (200) instead of a mismatched rest
    with open_url(url, headers) as response:
        if have and response.status != 206:
            have = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else remote.size
        with open(partial, "ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=partial.name[:-8],
                disable=None, miniters=1) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and partial.stat().st_size < total:
            raise ConnectionError("the server closed the connection")


# ---------------------------------------------------------------- checksums


def digests(path: Path) -> dict[str, str]:
    """MD5 and SHA-256 of a file, in one pass."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK * 4):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


class ChecksumError(DownloadError):
    """A downloaded file whose checksum is not the published one."""


def verify(path: Path, expected: dict[str, str], whose: str, name: str | None = None) -> dict[str, str]:
    """Check `path` against the expected digests; a mismatch removes the file and names it and both sums."""
    found = digests(path)
    for kind, value in expected.items():
        if found[kind] != value.lower():
            path.unlink()
            raise ChecksumError(f"{name or path.name}: {kind.upper()} {found[kind]} does not match {whose} {value}; "
                                f"the download is corrupt and was removed ({path}): rerun to fetch it again")
    return found


# ---------------------------------------------------------------- disk space


@dataclass(frozen=True)
class Need:
    """`size` bytes that will be written under `path` (which need not exist yet), for `what`."""
    path: Path
    size: int
    what: str


def existing(path: Path) -> Path:
    """`path`, or its nearest existing ancestor: the file system it will be written to."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_space(needs: list[Need], dataset: str) -> str:
    """Refuse, before any byte is fetched, when the needs of one file system exceed its free space; else say how
    much is free where."""
    by_device: dict[int, list[Need]] = {}
    free_text = []
    for need in needs:
        by_device.setdefault(existing(need.path).stat().st_dev, []).append(need)
    for group in by_device.values():
        where = existing(group[0].path)
        free = shutil.disk_usage(where).free
        total = sum(need.size for need in group)
        if total > free:
            parts = " + ".join(f"{need.what} {size_text(need.size)}" for need in group if need.size)
            raise DownloadError(f"{dataset}: needs {size_text(total)} ({parts}) but {where} has {size_text(free)} "
                                f"free; free some space or pass --root/--downloads on a larger disk")
        free_text.append(f"{size_text(free)} free on {where}")
    return ", ".join(free_text)


# ---------------------------------------------------------------- Kaggle


def kaggle_config_dir() -> Path:
    """Where the kaggle package looks for kaggle.json: $KAGGLE_CONFIG_DIR, else ~/.kaggle (~/.config/kaggle on
    Linux when ~/.kaggle does not exist), as the package itself decides."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path.home() / ".kaggle"
    if os.name == "posix" and not home.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    return home


def kaggle_credentials() -> str | None:
    """Where the kaggle package will find credentials (any of the ways it reads them), or None."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    home = Path.home() / ".kaggle"
    for path in (kaggle_config_dir() / "kaggle.json", home / "access_token", home / "access_token.txt",
                 home / "credentials.json"):
        if path.is_file() and path.stat().st_size:
            return str(path)
    return None


def kaggle_what(archive: Archive) -> str:
    return f"{'competition' if archive.kind == KAGGLE_COMPETITION else 'dataset'} {archive.ref}"


def require_kaggle_credentials(archive: Archive, downloads: Path) -> str:
    """Where the credentials are; without any, one line naming the credential file, the page and the way out."""
    found = kaggle_credentials()
    if found is None:
        page = kaggle_page(archive.kind, archive.ref)
        accept = f"accept the rules at {page}" if archive.kind == KAGGLE_COMPETITION else f"open {page}"
        raise DownloadError(
            f"no Kaggle credentials for {kaggle_what(archive)}: create a token at {KAGGLE_TOKEN_PAGE} "
            f"and save it as {kaggle_config_dir() / 'kaggle.json'} (or set KAGGLE_USERNAME and KAGGLE_KEY), "
            f"{accept}, then rerun; or put {', '.join(archive.part_files)} (from "
            f"{kaggle_page(archive.kind, archive.ref, 'data')}) into {downloads}/ yourself")
    return found


def kaggle_api() -> tuple[Any, Any]:
    """(the kaggle package's API module, an authenticated KaggleApi).

    Imported here, not at the top: `import kaggle` authenticates at import time (it prints a help text to stdout
    when there are no credentials, creates its config folder, and may call Kaggle to check an access token), so
    it is imported only once we know credentials exist and a download is needed.
    """
    try:
        from kaggle.api import kaggle_api_extended as module
        api = module.KaggleApi()
        api.authenticate()
    except SystemExit:  # the package exits when it finds no usable credentials
        raise DownloadError(f"the kaggle package found no usable credentials (checked {kaggle_credentials()}); "
                            f"create a new token at {KAGGLE_TOKEN_PAGE}") from None
    except OSError as error:  # an access token is checked with Kaggle
        raise DownloadError(f"cannot reach Kaggle to check the credentials ({one_line(error)}); check the "
                            f"network or proxy settings and rerun") from None
    return module, api


def kaggle_request(module: Any, client: Any, archive: Archive, part: str) -> Any:
    """The streamed download response of one part, as the kaggle package's own download functions request it."""
    if archive.kind == KAGGLE_DATASET:
        request = module.ApiDownloadDatasetRequest()
        request.owner_slug, request.dataset_slug = archive.ref.split("/")
        return client.datasets.dataset_api_client.download_dataset(request)
    if archive.member is None:
        request = module.ApiDownloadDataFilesRequest()
        request.competition_name = archive.ref
        return client.competitions.competition_api_client.download_data_files(request)
    request = module.ApiDownloadDataFileRequest()
    request.competition_name, request.file_name = archive.ref, part
    return client.competitions.competition_api_client.download_data_file(request)


def kaggle_sizes(module: Any, api: Any, archive: Archive, parts: list[str], credentials: str) -> dict[str, int]:
    """The real size of each part (Content-Length of Kaggle's download response, closed before its body)."""
    sizes = {}
    try:
        with api.build_kaggle_client() as client:
            for part in parts:
                response = kaggle_request(module, client, archive, part)
                length = response.headers.get("Content-Length")
                response.close()
                if length:
                    sizes[part] = int(length)
    except OSError as error:
        raise kaggle_error(error, archive, credentials) from None
    return sizes


def kaggle_download(api: Any, archive: Archive, part: str, downloads: Path, credentials: str) -> None:
    """One part through the kaggle package's public download functions (its bar, its resume marker)."""
    try:
        if archive.kind == KAGGLE_DATASET:
            api.dataset_download_files(archive.ref, path=str(downloads), quiet=False)
        elif archive.member is None:
            api.competition_download_files(archive.ref, path=str(downloads), quiet=False)
        else:  # unzip: unwrap a file the server sent zipped as <file>.zip
            api.competition_download_file(archive.ref, part, path=str(downloads), quiet=False, unzip=True)
    except (OSError, ValueError) as error:
        raise kaggle_error(error, archive, credentials) from None
    if not kaggle_complete(downloads / part):
        raise DownloadError(f"{downloads / part}: the kaggle client finished without this file; rerun to resume")


def kaggle_complete(path: Path) -> bool:
    """A Kaggle download is complete once the file exists without the client's resume marker beside it."""
    return path.is_file() and not path.with_name(path.name + ".kaggle-partial").exists()


def kaggle_error(error: BaseException, archive: Archive, credentials: str) -> DownloadError:
    """A failed Kaggle call as one line: rules not accepted, credentials refused, not found, or no network."""
    what = kaggle_what(archive)
    page = kaggle_page(archive.kind, archive.ref)
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 403 and archive.kind == KAGGLE_COMPETITION:
        return DownloadError(f"Kaggle refused {what} (403): accept the competition's rules at {page} with the "
                             f"account of {credentials}, then rerun")
    if status == 401 or status == 403:
        return DownloadError(f"Kaggle refused the credentials in {credentials} ({status}) for {what}: create a new "
                             f"token at {KAGGLE_TOKEN_PAGE} and rerun")
    if status == 404:
        return DownloadError(f"Kaggle has no {what} (404); see {page}")
    if status is not None:
        return DownloadError(f"Kaggle answered {status} for {what} ({one_line(error)}); rerun later, downloads resume")
    if isinstance(error, ValueError):
        return DownloadError(f"{what}: {one_line(error)}; rerun to fetch it again")
    return DownloadError(f"cannot reach Kaggle for {what} ({one_line(error)}); check the network or proxy settings "
                         f"and rerun, downloads resume where they stopped")


# ---------------------------------------------------------------- torchvision


def torchvision_download(archive: Archive, downloads: Path) -> None:
    """torchvision's own download of EuroSAT or CIFAR-10 (its URL and MD5) into `downloads`, unpacked there."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, archive.ref)
    downloads.mkdir(parents=True, exist_ok=True)
    try:
        dataset_class(str(downloads), download=True)
    except (OSError, RuntimeError) as error:  # no network; "File not found or corrupted." for an MD5 mismatch
        raise DownloadError(f"torchvision.datasets.{archive.ref} could not download into {downloads} "
                            f"({one_line(error)}); check the network and rerun") from None
