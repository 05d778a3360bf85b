"""panoptic2.utils.url_handlers: detectron2:// and torchvision:// URLs, the local cache,
atomic downloads and the offline message. No test reaches the internet: files are placed in
the cache by hand or served from a local HTTP server."""

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib import error as urllib_error

import pytest
import torchvision

from panoptic2.utils import url_handlers
from panoptic2.utils.file_io import PathManager
from panoptic2.utils.url_handlers import (
    CachedHTTPURLHandler,
    DownloadError,
    get_cache_dir,
    resolve_url,
)

R50 = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
R50_HTTPS = "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("PANOPTIC2_CACHE", str(root))
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a URL fails the way an offline machine does, and is counted."""
    attempts = []

    def offline(req, *args, **kwargs):
        attempts.append(getattr(req, "full_url", req))
        raise urllib_error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(url_handlers.request, "urlopen", offline)
    return attempts


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def server():
    """A local HTTP server; ``server.routes[path] = (body, announced_length, stall_s)``."""
    routes, hits = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, length, stall_s = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            time.sleep(stall_s)  # then close: fewer bytes than announced when length > body

        def log_message(self, *args):
            pass

    httpd = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.routes, httpd.hits = routes, hits
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_cache_dir_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("PANOPTIC2_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert get_cache_dir() == str(tmp_path / "explicit")
    monkeypatch.delenv("PANOPTIC2_CACHE")
    assert get_cache_dir() == str(tmp_path / "xdg" / "panoptic2")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_cache_dir() == str(tmp_path / "home" / ".cache" / "panoptic2")


def test_detectron2_url_uses_the_cached_file_without_network(cache, no_network):
    # Detectron2's (iopath's) layout: the URL's path under the cache directory.
    expected = cache / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"weights")
    assert PathManager.get_local_path(R50) == str(expected)
    assert PathManager.get_local_path(R50_HTTPS) == str(expected)  # same file, same URL
    with PathManager.open(R50, "rb") as f:
        assert f.read() == b"weights"
    assert no_network == []


def test_offline_error_names_url_and_path(cache, no_network):
    expected = cache / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    with pytest.raises(DownloadError) as info:
        PathManager.get_local_path(R50)
    message = str(info.value)
    assert R50 in message and R50_HTTPS in message
    assert f"\n  {expected}\n" in message  # the exact path, on its own line
    assert "name resolution" in message
    assert info.value.local_path == str(expected)
    assert no_network == [R50_HTTPS]
    assert not expected.exists()


def test_unreachable_server_fails_fast(cache):
    # A port nobody listens on: connection refused, no waiting.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/models/w.pth"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=str(cache / "models" / "w.pth")):
        PathManager.get_local_path(url)
    assert time.monotonic() - start < 10


def test_silent_server_times_out(cache):
    # Accepts the connection but never answers: the socket timeout ends the wait.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/models/w.pth"
        handler = CachedHTTPURLHandler(timeout_s=0.3)
        start = time.monotonic()
        with pytest.raises(DownloadError, match="timed out"):
            handler.fetch(url)
        assert time.monotonic() - start < 10


def test_download_once_then_from_cache(cache, server):
    body = os.urandom(3 << 20)  # several read chunks
    server.routes["/detectron2/x/model.pkl"] = (body, len(body), 0)
    url = server.url + "/detectron2/x/model.pkl"
    local = PathManager.get_local_path(url)
    assert local == str(cache / "detectron2" / "x" / "model.pkl")
    assert Path(local).read_bytes() == body
    assert PathManager.get_local_path(url) == local
    assert server.hits == ["/detectron2/x/model.pkl"]  # the second lookup used the cache
    assert sorted(os.listdir(cache / "detectron2" / "x")) == ["model.pkl", "model.pkl.lock"]


def test_truncated_download_leaves_no_file(cache, server):
    server.routes["/m/w.pth"] = (b"x" * 100, 1000, 0)  # announces 1000 bytes, sends 100
    with pytest.raises(DownloadError, match="100 of 1000 bytes"):
        PathManager.get_local_path(server.url + "/m/w.pth")
    assert os.listdir(cache / "m") == ["w.pth.lock"]  # no w.pth, no temp file


def test_killed_download_never_leaves_the_cache_name(cache, server):
    server.routes["/m/w.pth"] = (b"x" * 1000, 2000, 60)  # half, then a long stall
    url = server.url + "/m/w.pth"
    script = (
        "import sys; from panoptic2.utils.file_io import PathManager; "
        "PathManager.get_local_path(sys.argv[1])"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, url])
    try:
        deadline = time.monotonic() + 60
        # Wait until the half-written temp file exists, then kill the downloader.
        while not list(cache.glob("m/.w.pth.*.tmp")):
            assert proc.poll() is None, "the download process ended early"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (cache / "m" / "w.pth").exists()
    # The next lookup downloads the whole file.
    server.routes["/m/w.pth"] = (b"y" * 2000, 2000, 0)
    assert Path(PathManager.get_local_path(url)).read_bytes() == b"y" * 2000


def test_torchvision_urls_match_torchvision():
    full = "ResNet50_Weights.IMAGENET1K_V1"
    assert resolve_url(f"torchvision://{full}") == torchvision.models.get_weight(full).url
    # The short form is the model's DEFAULT weights.
    default = torchvision.models.get_model_weights("resnet101").DEFAULT
    assert resolve_url("torchvision://resnet101") == default.url
    assert resolve_url("torchvision://mobilenet_v3_large") == (
        torchvision.models.MobileNet_V3_Large_Weights.DEFAULT.url
    )
    assert resolve_url(R50) == R50_HTTPS
    assert resolve_url("/local/file.pth") == "/local/file.pth"


def test_torchvision_url_is_cached_under_its_url_path(cache, no_network):
    url = torchvision.models.get_weight("ResNet18_Weights.IMAGENET1K_V1").url
    expected = cache.joinpath(*url.split("://", 1)[1].split("/")[1:])
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"resnet18")
    assert PathManager.get_local_path("torchvision://ResNet18_Weights.IMAGENET1K_V1") == str(
        expected
    )


def test_bad_names_are_explained(cache):
    with pytest.raises(ValueError, match="Did you mean resnet50"):
        resolve_url("torchvision://resnet5")
    with pytest.raises(ValueError, match=r"no weights 'ResNet50_Weights.NOPE'"):
        resolve_url("torchvision://ResNet50_Weights.NOPE")
    with pytest.raises(ValueError, match="names no file"):
        PathManager.get_local_path("detectron2://")
    with pytest.raises(ValueError, match="climbs above its root"):
        PathManager.get_local_path("https://example.com/a/../../etc/passwd")


def test_relative_segments_resolve_inside_the_cache(cache, no_network):
    # A config fetched by URL names its _BASE_ relative to itself: ".../COCO/../Base.yaml".
    expected = cache / "detectron2" / "configs" / "Base.yaml"
    expected.parent.mkdir(parents=True)
    expected.write_text("MODEL: {}\n")
    url = "detectron2://configs/COCO/../Base.yaml"
    assert PathManager.get_local_path(url) == str(expected)
