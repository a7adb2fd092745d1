"""`python -m data.download`: every dataset from its source to the layout its loader reads, run as a user runs it.

A real HTTP server on 127.0.0.1 (Range requests, ETag, Content-MD5 / x-goog-hash, and a connection it can cut
half-way) serves fixture archives built from data.synthetic's output in each source's archive layout: LILA's two
CCT-20 tar.gz files through --mirror; the Kaggle downloads (APTOS, HPA, Cassava and DR-2015 competitions, the two
Melanoma re-packagings) are placed where the kaggle client leaves them, DR-2015's train.zip in five parts; EuroSAT
goes through torchvision.datasets.EuroSAT, which finds its own layout in place. Without Kaggle credentials, and
with credentials but no network (a proxy that refuses every connection), each Kaggle dataset ends in one line.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data import REGISTRY, describe, open_dataset
from data.sources import NO_DOWNLOAD, SOURCES, kaggle_page, release
from data.synthetic import write_fixture
from data.unpack import MARKER

from conftest import REPO

# ---------------------------------------------------------------- a file server with Range support


class Served:
    """What the server holds and what it was asked: path -> (bytes, extra headers), a request log, and switches."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.cut_once: set[str] = set()       # paths whose next GET stops half-way and closes the connection
        self.announce: dict[str, int] = {}    # paths whose HEAD announces this size instead of the real one
        self.rules_not_accepted: set[str] = set()  # Kaggle competitions that answer 403
        self.log: list[tuple[str, str, str | None]] = []
        self.url = ""                         # http://127.0.0.1:<port>, once serving

    def add(self, path: str, data: bytes, md5: str | None = None) -> None:
        """Serve `data` at `path`; md5="content-md5" or "x-goog-hash" publishes its MD5 that way."""
        encoded = base64.b64encode(hashlib.md5(data).digest()).decode()
        headers = {"content-md5": {"Content-MD5": encoded},
                   "x-goog-hash": {"x-goog-hash": f"crc32c=AAAAAA==,md5={encoded}"}, None: {}}[md5]
        self.files[path] = (data, headers)


KAGGLE_LOCAL = "http://localhost"  # the kaggle package's endpoint under KAGGLE_API_ENVIRONMENT=LOCALHOST


def kaggle_location(path: str, request: dict) -> str | None:
    """Where Kaggle's API redirects a download request to (the file's URL), as the real API does."""
    if path.endswith("CompetitionApiService/DownloadDataFiles"):
        return f"/files/{request['competitionName']}.zip"
    if path.endswith("CompetitionApiService/DownloadDataFile"):
        return f"/files/{request['competitionName']}/{request['fileName']}"
    if path.endswith("DatasetApiService/DownloadDataset"):
        return f"/files/{request['ownerSlug']}/{request['datasetSlug']}.zip"
    return None


def handler_for(served: Served):
    class Handler(BaseHTTPRequestHandler):
        """Files with Range requests; and, as the proxy the kaggle client is sent through, Kaggle's download API."""
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle(self):
            try:
                super().handle()
            except (ConnectionResetError, BrokenPipeError):  # a client that read the headers only, then closed
                pass

        def do_HEAD(self):
            self.respond(body=False)

        def do_GET(self):
            self.respond(body=True)

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            path = self.path.removeprefix(KAGGLE_LOCAL)
            served.log.append(("POST", path, None))
            location = kaggle_location(path, request)
            if location is None:
                self.send_error(404)
                return
            if request.get("competitionName") in served.rules_not_accepted:
                body = json.dumps({"code": 403, "message": "You must accept this competition's rules before "
                                                           "you'll be able to download files."}).encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(302)
            self.send_header("Location", KAGGLE_LOCAL + location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def respond(self, body: bool) -> None:
            path = self.path.removeprefix(KAGGLE_LOCAL)
            served.log.append((self.command, path, self.headers.get("Range")))
            if path not in served.files:
                self.send_error(404)
                return
            data, extra = served.files[path]
            etag = f'"{hashlib.sha1(data).hexdigest()}"'
            start, ranged = 0, self.headers.get("Range")
            if ranged and self.headers.get("If-Range", etag) == etag:
                start = int(ranged.split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            size = served.announce.get(path, len(data) - start) if not body else len(data) - start
            for name, value in {"Content-Length": str(size), "Accept-Ranges": "bytes", "ETag": etag,
                                "Content-Type": "application/octet-stream",
                                "Last-Modified": "Wed, 01 Jan 2020 00:00:00 GMT", **extra}.items():
                self.send_header(name, value)
            self.end_headers()
            if not body:
                return
            rest = data[start:]
            if path in served.cut_once:
                served.cut_once.discard(path)
                self.wfile.write(rest[:len(rest) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(rest)

    return Handler


@pytest.fixture
def server():
    served = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(served))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield served
    httpd.shutdown()
    httpd.server_close()


# ---------------------------------------------------------------- fixture archives in each source's layout


def zip_bytes(folder: Path, prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, prefix + path.relative_to(folder).as_posix())
    return buffer.getvalue()


def tar_gz_bytes(folder: Path, names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in names:
            tar.add(folder / name, arcname=name)
    return buffer.getvalue()


def cct20_archives(tmp_path: Path, **options) -> dict[str, bytes]:
    """LILA's two archives: eccv_18_annotations.tar.gz (eccv_18_annotation_files/) and the small images."""
    native = write_fixture("cct20", tmp_path / "native-cct20", per_class=2, **options)
    return {"eccv_18_annotations.tar.gz": tar_gz_bytes(native, ["eccv_18_annotation_files"]),
            "eccv_18_all_images_sm.tar.gz": tar_gz_bytes(native, ["eccv_18_all_images_sm"])}


def kaggle_archives(name: str, tmp_path: Path) -> dict[str, bytes]:
    """The files the kaggle client leaves in the downloads folder for each Kaggle dataset."""
    native = write_fixture(name, tmp_path / f"native-{name}", per_class=2)
    if name == "melanoma":  # two Kaggle datasets, one per year
        return {"jpeg-melanoma-512x512.zip": zip_bytes(native / "melanoma-2020"),
                "jpeg-isic2019-512x512.zip": zip_bytes(native / "melanoma-2019")}
    if name == "dr2015":  # trainLabels.csv.zip, and train.zip split into five parts (train/<image>.jpeg inside)
        labels = io.BytesIO()
        with zipfile.ZipFile(labels, "w") as zipped:
            zipped.write(native / "trainLabels.csv", "trainLabels.csv")
        whole = zip_bytes(native / "train", "train/")
        step = -(-len(whole) // 5)
        parts = {f"train.zip.{i + 1:03d}": whole[i * step:(i + 1) * step] for i in range(5)}
        return {"trainLabels.csv.zip": labels.getvalue(), **parts}
    if name == "cassava":  # the competition also ships TFRecord copies, which are not unpacked
        (native / "train_tfrecords").mkdir()
        (native / "train_tfrecords" / "ld_train00-1338.tfrec").write_bytes(b"\0" * 64)
    return {release(name).archives[0].file: zip_bytes(native)}


# ---------------------------------------------------------------- running the command


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """No Kaggle credentials and no proxy from the machine running the tests; HOME a fresh folder."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("KAGGLE_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                                                     "no_proxy", "xdg_config_home")}
    home.mkdir(exist_ok=True)
    return {**env, "HOME": str(home), "PYTHONPATH": str(REPO), **extra}


def download(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data.download", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=clean_env(tmp_path / "home", **env))


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("data.download: error: "), result.stderr
    return lines[0]


def check_complete(name: str, root: Path, result: subprocess.CompletedProcess) -> None:
    """The root opens with the dataset's loader, the marker is there, and the count was printed as train.py does."""
    assert result.returncode == 0, result.stdout + result.stderr
    samples = open_dataset(name, root)
    assert f"{name}: layout checked: {describe(samples)}" in result.stdout
    marker = json.loads((root / MARKER).read_text())
    assert marker["samples"] == len(samples) and marker["dataset"] == name
    assert not (root.parent / f".{root.name}.unpacking").exists()


# ---------------------------------------------------------------- LILA over HTTPS: resume, checksum, second run


def test_cct20_cut_half_way_resumes_byte_identical_and_a_second_run_does_nothing(tmp_path, server):
    archives = cct20_archives(tmp_path)
    for file, data in archives.items():
        server.add(f"/lila/{file}", data, md5="x-goog-hash" if "images" in file else "content-md5")
    server.cut_once.add("/lila/eccv_18_all_images_sm.tar.gz")
    root, downloads = tmp_path / "datasets" / "cct20", tmp_path / "datasets" / "downloads"
    result = download(tmp_path, "cct20", "--mirror", f"{server.url}/lila", "--keep-archives")
    check_complete("cct20", root, result)
    assert "connection cut after" in result.stdout
    ranges = [entry for entry in server.log if entry[2]]
    half = (len(archives["eccv_18_all_images_sm.tar.gz"])) // 2
    assert ranges == [("GET", "/lila/eccv_18_all_images_sm.tar.gz", f"bytes={half}-")]
    for file, data in archives.items():
        assert (downloads / "cct20" / file).read_bytes() == data
    marker = json.loads((root / MARKER).read_text())
    assert {a["file"]: (a["md5"], a["sha256"]) for a in marker["archives"]} == {
        file: (hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()) for file, data in archives.items()}

    requests = len(server.log)
    again = download(tmp_path, "cct20", "--mirror", f"{server.url}/lila")
    assert again.returncode == 0 and "complete at datasets/cct20" in again.stdout and "nothing to do" in again.stdout
    assert len(server.log) == requests  # nothing fetched, not even a HEAD


def test_a_partial_download_from_an_earlier_run_resumes(tmp_path, server):
    archives = cct20_archives(tmp_path)
    for file, data in archives.items():
        server.add(f"/lila/{file}", data, md5="content-md5")
    images = archives["eccv_18_all_images_sm.tar.gz"]
    downloads = tmp_path / "downloads" / "cct20"
    downloads.mkdir(parents=True)
    (downloads / "eccv_18_all_images_sm.tar.gz.partial").write_bytes(images[:1000])  # what a killed run leaves
    result = download(tmp_path, "cct20", "--root", "cct20", "--mirror", f"{server.url}/lila")
    check_complete("cct20", tmp_path / "cct20", result)
    assert ("GET", "/lila/eccv_18_all_images_sm.tar.gz", "bytes=1000-") in server.log
    assert not downloads.exists()  # the archives are removed once the dataset is complete (no --keep-archives)


def test_a_checksum_mismatch_is_refused_and_nothing_looks_complete(tmp_path, server):
    archives = cct20_archives(tmp_path)
    for file, data in archives.items():
        server.add(f"/lila/{file}", data, md5="content-md5")
    images = archives["eccv_18_all_images_sm.tar.gz"]
    downloads = tmp_path / "downloads" / "cct20"
    downloads.mkdir(parents=True)
    corrupt = bytes(b ^ 0xFF for b in images[:1000])  # a partial file whose bytes went bad on disk
    (downloads / "eccv_18_all_images_sm.tar.gz.partial").write_bytes(corrupt)
    result = download(tmp_path, "cct20", "--root", "cct20", "--mirror", f"{server.url}/lila")
    line = one_error_line(result)
    found = hashlib.md5(corrupt + images[1000:]).hexdigest()
    assert f"eccv_18_all_images_sm.tar.gz: MD5 {found} does not match the MD5 published by" in line
    assert hashlib.md5(images).hexdigest() in line
    assert not (tmp_path / "cct20").exists() and not (tmp_path / ".cct20.unpacking").exists()
    assert sorted(p.name for p in downloads.iterdir()) == ["eccv_18_annotations.tar.gz"]  # the good one stays

    rerun = download(tmp_path, "cct20", "--root", "cct20", "--mirror", f"{server.url}/lila")
    check_complete("cct20", tmp_path / "cct20", rerun)


def test_space_shortfall_is_refused_before_any_byte(tmp_path, server):
    archives = cct20_archives(tmp_path)
    for file, data in archives.items():
        server.add(f"/lila/{file}", data)
    server.announce["/lila/eccv_18_all_images_sm.tar.gz"] = 10**15  # 1 PB: more than any disk has free
    result = download(tmp_path, "cct20", "--mirror", f"{server.url}/lila")
    line = one_error_line(result)
    assert "cct20: needs 2016539.5 GB (download 1000000.0 GB + unpacked" in line
    assert "GB free; free some space or pass --root/--downloads on a larger disk" in line
    assert all(method == "HEAD" for method, _, _ in server.log)
    assert not (tmp_path / "datasets").exists()


def test_an_unreachable_server_is_one_line(tmp_path):
    line = one_error_line(download(tmp_path, "cct20", "--mirror", "http://127.0.0.1:9/lila"))
    assert "http://127.0.0.1:9/lila/eccv_18_annotations.tar.gz: cannot connect" in line
    assert "check the network (or --mirror) and rerun" in line


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 1 MB file system (tmpfs), where this machine lets the tests mount one (root on Linux)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the announced-size test covers the refusal")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_space_shortfall_on_a_real_small_filesystem(tmp_path, server, small_filesystem):
    archives = cct20_archives(tmp_path, size=(96, 96))
    assert sum(map(len, archives.values())) > 600_000  # archives + unpacked do not fit in 1 MB
    for file, data in archives.items():
        server.add(f"/lila/{file}", data)
    result = download(tmp_path, "cct20", "--root", str(small_filesystem / "cct20"), "--mirror", f"{server.url}/lila")
    assert f"but {small_filesystem} has 1 MB free" in one_error_line(result)
    assert list(small_filesystem.iterdir()) == [] and all(method == "HEAD" for method, _, _ in server.log)


# ---------------------------------------------------------------- Kaggle


KAGGLE = ["aptos", "dr2015", "hpa", "melanoma", "cassava"]


@pytest.mark.parametrize("name", KAGGLE)
def test_kaggle_archives_where_the_client_leaves_them_unpack_into_the_loaders_layout(tmp_path, name):
    downloads = tmp_path / "datasets" / "downloads" / name
    downloads.mkdir(parents=True)
    for file, data in kaggle_archives(name, tmp_path).items():
        (downloads / file).write_bytes(data)
    result = download(tmp_path, name)  # no credentials needed: nothing is missing
    root = tmp_path / "datasets" / name
    check_complete(name, root, result)
    assert not downloads.exists()
    if name == "hpa":
        assert "python splits.py hpa --root datasets/hpa --from split.stratified.small.0.csv" in result.stdout
    if name == "cassava":
        assert not (root / "train_tfrecords").exists()
    if name == "melanoma":
        assert open_dataset("melanoma", root).options["years"] == ["2020", "2019"]
        other = one_error_line(download(tmp_path, name, "--release", "official"))
        assert "datasets/melanoma holds the repackaged release of melanoma, not official" in other
    again = download(tmp_path, name)
    assert again.returncode == 0 and again.stdout.strip().endswith("nothing to do"), again.stdout


def test_a_wrapping_folder_and_an_inner_zip_end_in_the_loaders_layout(tmp_path):
    """Sources that put the files one folder down, or zip a folder inside the bundle, still give the layout."""
    native = write_fixture("melanoma", tmp_path / "native-melanoma", per_class=1)
    hpa = write_fixture("hpa", tmp_path / "native-hpa", per_class=1)
    inner = zip_bytes(hpa / "train", "train/")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:  # train.csv beside train.zip instead of the train/ folder
        zipped.write(hpa / "train.csv", "train.csv")
        zipped.writestr("train.zip", inner)
    placed = {"melanoma": {"jpeg-melanoma-512x512.zip": zip_bytes(native / "melanoma-2020", "jpeg-melanoma/"),
                           "jpeg-isic2019-512x512.zip": zip_bytes(native / "melanoma-2019")},
              "hpa": {"human-protein-atlas-image-classification.zip": buffer.getvalue()}}
    for name, archives in placed.items():
        downloads = tmp_path / "datasets" / "downloads" / name
        downloads.mkdir(parents=True)
        for file, data in archives.items():
            (downloads / file).write_bytes(data)
        check_complete(name, tmp_path / "datasets" / name, download(tmp_path, name))
    assert not (tmp_path / "datasets" / "hpa" / "train.zip").exists()


def test_a_truncated_archive_is_refused_and_nothing_looks_complete(tmp_path):
    downloads = tmp_path / "datasets" / "downloads" / "aptos"
    downloads.mkdir(parents=True)
    data = kaggle_archives("aptos", tmp_path)["aptos2019-blindness-detection.zip"]
    (downloads / "aptos2019-blindness-detection.zip").write_bytes(data[:len(data) // 2])
    line = one_error_line(download(tmp_path, "aptos"))
    assert "aptos2019-blindness-detection.zip: cannot be unpacked" in line and "corrupt or incomplete" in line
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["downloads"]


def test_a_wrong_archive_is_found_by_the_layout_check_and_kept_to_look_at(tmp_path):
    downloads = tmp_path / "datasets" / "downloads" / "aptos"
    downloads.mkdir(parents=True)
    cassava = kaggle_archives("cassava", tmp_path)["cassava-leaf-disease-classification.zip"]
    (downloads / "aptos2019-blindness-detection.zip").write_bytes(cassava)  # the wrong competition's download
    result = download(tmp_path, "aptos")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    first, *problems = result.stderr.strip().splitlines()
    assert first == ("data.download: error: aptos: the archives in datasets/downloads/aptos do not unpack into the "
                     "layout the loader reads; what they hold is in datasets/.aptos.unpacking (removed by the next "
                     "run):")
    assert any("train.csv" in problem for problem in problems)
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == [".aptos.unpacking", "downloads"]


def test_all_checks_kaggle_credentials_before_anything(tmp_path):
    line = one_error_line(download(tmp_path, "all"))
    assert "no Kaggle credentials for competition aptos2019-blindness-detection" in line
    assert not (tmp_path / "datasets").exists()  # not even CCT-20, the first in the list, was started


@pytest.mark.parametrize("name,chosen", [(name, None) for name in KAGGLE] + [("melanoma", "official")])
def test_without_kaggle_credentials_one_line_names_the_credential_file_and_the_page(tmp_path, name, chosen):
    archive = release(name, chosen).archives[0]
    result = download(tmp_path, name, *(["--release", chosen] if chosen else []))
    line = one_error_line(result)
    assert str(tmp_path / "home" / ".config" / "kaggle" / "kaggle.json") in line  # kaggle's place without ~/.kaggle
    assert kaggle_page(archive.kind, archive.ref) in line
    assert not (tmp_path / "datasets").exists()


def test_kaggle_config_dir_is_the_credential_place_named(tmp_path):
    line = one_error_line(download(tmp_path, "aptos", KAGGLE_CONFIG_DIR=str(tmp_path / "conf")))
    assert f"save it as {tmp_path / 'conf' / 'kaggle.json'}" in line
    assert "https://www.kaggle.com/competitions/aptos2019-blindness-detection/rules" in line


def test_with_kaggle_credentials_but_no_network_one_line(tmp_path):
    dead = "http://127.0.0.1:9"  # a proxy that refuses every connection: nothing leaves this machine
    result = download(tmp_path, "melanoma", KAGGLE_USERNAME="someone", KAGGLE_KEY="0" * 32,
                      HTTPS_PROXY=dead, HTTP_PROXY=dead)
    line = one_error_line(result)
    assert "cannot reach Kaggle for dataset cdeotte/jpeg-melanoma-512x512" in line
    assert "check the network or proxy settings and rerun" in line


def through_kaggle(server: Served) -> dict[str, str]:
    """Credentials, and the kaggle package pointed at this server: its own local endpoint switch, reached through
    the server as an HTTP proxy (the real client code runs; nothing leaves this machine)."""
    return {"KAGGLE_USERNAME": "someone", "KAGGLE_KEY": "0" * 32, "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": server.url}


def test_dr2015_parts_through_the_kaggle_client_resume_a_part_an_earlier_run_left(tmp_path, server):
    archives = kaggle_archives("dr2015", tmp_path)
    for file, data in archives.items():
        server.add(f"/files/diabetic-retinopathy-detection/{file}", data)
    downloads = tmp_path / "datasets" / "downloads" / "dr2015"
    downloads.mkdir(parents=True)
    part = archives["train.zip.003"]  # half fetched by the kaggle client when the last run was killed
    (downloads / "train.zip.003").write_bytes(part[:len(part) // 2])
    (downloads / "train.zip.003.kaggle-partial").write_text(
        json.dumps({"validator": f'"{hashlib.sha1(part).hexdigest()}"', "size": len(part)}))
    result = download(tmp_path, "dr2015", "--keep-archives", **through_kaggle(server))
    check_complete("dr2015", tmp_path / "datasets" / "dr2015", result)
    assert ("GET", "/files/diabetic-retinopathy-detection/train.zip.003", f"bytes={len(part) // 2}-") in server.log
    for file, data in archives.items():
        assert (downloads / file).read_bytes() == data and not (downloads / f"{file}.kaggle-partial").exists()


def test_melanoma_through_the_kaggle_client_from_the_two_kaggle_datasets(tmp_path, server):
    for file, data in kaggle_archives("melanoma", tmp_path).items():
        server.add(f"/files/cdeotte/{file}", data)
    result = download(tmp_path, "melanoma", **through_kaggle(server))
    check_complete("melanoma", tmp_path / "datasets" / "melanoma", result)
    posts = [path for method, path, _ in server.log if method == "POST"]
    assert len(posts) == 4  # each dataset's size, then its download


def test_rules_not_accepted_is_one_line_naming_the_rules_page(tmp_path, server):
    server.rules_not_accepted.add("aptos2019-blindness-detection")
    line = one_error_line(download(tmp_path, "aptos", **through_kaggle(server)))
    assert ("Kaggle refused competition aptos2019-blindness-detection (403): accept the competition's rules at "
            "https://www.kaggle.com/competitions/aptos2019-blindness-detection/rules with the account of "
            "KAGGLE_USERNAME and KAGGLE_KEY, then rerun") in line
    assert not (tmp_path / "datasets").exists()


# ---------------------------------------------------------------- torchvision, the rest of the command line


def test_eurosat_through_torchvision_in_its_own_layout(tmp_path):
    downloads = tmp_path / "datasets" / "downloads" / "eurosat"
    write_fixture("eurosat", downloads, per_class=2, torchvision_layout=True)  # as torchvision unpacks EuroSAT.zip
    result = download(tmp_path, "eurosat")
    check_complete("eurosat", tmp_path / "datasets" / "eurosat", result)
    assert (tmp_path / "datasets" / "eurosat" / "2750").is_dir()


def test_a_root_holding_something_else_is_left_alone(tmp_path):
    root = write_fixture("aptos", tmp_path / "aptos", per_class=1)
    (root / "train.csv").unlink()
    line = one_error_line(download(tmp_path, "aptos", "--root", "aptos"))
    assert "aptos already exists and is not a complete aptos" in line and "train.csv" in line
    write_fixture("aptos", tmp_path / "aptos", per_class=1)  # a complete copy put there by hand
    result = download(tmp_path, "aptos", "--root", "aptos")
    assert result.returncode == 0 and "already holds a complete copy" in result.stdout


def test_help_lists_every_dataset_with_its_source_and_size(tmp_path):
    result = download(tmp_path, "--help")
    assert result.returncode == 0
    listing = result.stdout[result.stdout.index("datasets (source;"):]
    for name in REGISTRY:
        line = next(line for line in listing.splitlines() if line.strip().startswith(name + " "))
        assert name in NO_DOWNLOAD or (release(name).title in line and ("GB" in line or "MB" in line)), line
    assert "--release official" in listing


def test_every_registry_dataset_has_a_source():
    assert set(SOURCES) | set(NO_DOWNLOAD) == set(REGISTRY)
    for releases in SOURCES.values():
        for chosen in releases.values():
            assert chosen.archives and all(a.size > 0 and a.unpacked > 0 and a.expect for a in chosen.archives)


def test_digits_and_misused_options(tmp_path):
    result = download(tmp_path, "digits")
    assert result.returncode == 0 and "nothing to download" in result.stdout
    bad = download(tmp_path, "aptos", "--release", "official")
    assert bad.returncode == 2 and "only melanoma has releases" in bad.stderr and "Traceback" not in bad.stderr
