"""Downloads on request, against a real HTTP server on 127.0.0.1 (http.server in a thread):
twohded.download, load_model with a URL or a shipped name, encoder_weights="imagenet"."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading

import pytest
import torch

from twohded.download import DownloadError, cache_dir, download, hash_prefix, split_url_hash
from twohded.errors import InputError


class _Server:
    def __init__(self, root):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # quiet; count instead
                outer.requests.append(self.path)

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.root = root
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def put(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return f"{self.url}/{name}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = _Server(tmp_path_factory.mktemp("served"))
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWOHDED_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_helpers():
    assert hash_prefix("densenet121-a639ec97.pth") == "a639ec97"
    assert hash_prefix("model.pt") is None and hash_prefix("resnet-abc.pt") is None  # < 8 hex digits
    assert split_url_hash("http://h/m.pt#sha256=ab") == ("http://h/m.pt", "ab")
    assert split_url_hash("http://h/m.pt") == ("http://h/m.pt", None)


def test_good_file_is_cached_and_reused(server, cache):
    data = b"weights" * 1000
    url = server.put("good.bin", data)
    before = len(server.requests)
    path = download(url, sha256=_sha(data))
    assert path == cache_dir() / "downloads" / "good.bin" and path.read_bytes() == data
    assert cache_dir() == cache
    assert download(url + f"#sha256={_sha(data)}") == path  # the cached file, hash re-checked
    assert len(server.requests) == before + 1
    path.write_bytes(b"corrupted")  # a damaged cached file is fetched again
    assert download(url, sha256=_sha(data)).read_bytes() == data
    assert len(server.requests) == before + 2
    assert [p.name for p in path.parent.iterdir()] == ["good.bin"]  # no temporary left


def test_torchvision_style_name_is_checked_by_its_prefix(server, cache):
    data = b"fake checkpoint"
    good = server.put(f"net-{_sha(data)[:8]}.pth", data)
    assert download(good).read_bytes() == data
    bad = server.put("net-00000000.pth", data)
    with pytest.raises(DownloadError, match=r"expected SHA-256 prefix 00000000; the file was removed"):
        download(bad)
    assert not (cache / "downloads" / "net-00000000.pth").exists()


def test_wrong_hash_removes_the_file(server, cache):
    url = server.put("wrong.bin", b"abc")
    with pytest.raises(DownloadError, match="wrong.bin: downloaded file has SHA-256 .* expected SHA-256 0+; the file was removed") as err:
        download(url, sha256="0" * 64)
    assert "\n" not in str(err.value)
    assert list((cache / "downloads").iterdir()) == []


def test_unreachable_404_and_no_hash(server, cache):
    with pytest.raises(DownloadError, match="cannot reach the server"):
        download(f"http://127.0.0.1:{_closed_port()}/x.bin", sha256="0" * 64, timeout_s=5)
    with pytest.raises(DownloadError, match="HTTP error 404"):
        download(f"{server.url}/missing.bin", sha256="0" * 64)
    before = len(server.requests)
    with pytest.raises(DownloadError, match="no hash to check"):
        download(server.put("nohash.bin", b"x"))
    with pytest.raises(DownloadError, match="64 hex digits"):
        download(f"{server.url}/nohash.bin#sha256=xyz")
    with pytest.raises(DownloadError, match="only http"):
        download("ftp://127.0.0.1/a.bin", sha256="0" * 64)
    assert len(server.requests) == before  # nothing was fetched without a hash
    assert not (cache / "downloads").exists() or list((cache / "downloads").iterdir()) == []


def test_load_model_from_url_and_shipped_names(server, cache, ckpt, tmp_path, monkeypatch):
    from twohded.cli import main
    from twohded.predict import load_model

    data = ckpt.read_bytes()
    url = server.put("model.pt", data)
    predictor = load_model(f"{url}#sha256={_sha(data)}", device="cpu")
    assert predictor.info["checkpoint"] == str(cache / "checkpoints" / "model.pt")
    assert load_model(url, sha256=_sha(data), device="cpu").info["model_name"] == "2hded"
    with pytest.raises(DownloadError, match="expected SHA-256"):
        load_model(url, sha256="1" * 64)
    with pytest.raises(InputError, match="no hash"):
        load_model(url)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="'dfd-indoor': no weights ship yet"):
        load_model("dfd-indoor")
    with pytest.raises(InputError, match="neither a checkpoint file nor a shipped model"):
        load_model("dfd-outdoor")
    assert main(["predict", "--checkpoint", f"{server.url}/missing.pt#sha256={'0' * 64}",
                 str(tmp_path), "--out", str(tmp_path / "o")]) == 2


def _fake_torchvision_densenet(encoder) -> dict:
    """A state dict shaped like torchvision's densenet121-a639ec97.pth: old "norm.1" style names,
    a 7x7 stem conv, a classifier, no downconv0 / stem norm1, no num_batches_tracked."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for key, value in encoder.state_dict().items():
        if key.endswith("num_batches_tracked") or key.startswith(("features.downconv0", "features.norm1.")):
            continue
        if ".denselayer" in key:
            for part in ("norm1", "norm2", "conv1", "conv2"):
                key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        sd[key] = torch.rand(value.shape, generator=g) + 0.5
    sd["features.conv0.weight"] = torch.rand(64, 3, 7, 7, generator=g)
    sd["classifier.weight"] = torch.rand(1000, 1024, generator=g)
    sd["classifier.bias"] = torch.rand(1000, generator=g)
    return sd


def test_imagenet_weights_download_and_key_mapping(server, cache, tmp_path, monkeypatch):
    import twohded.models.encoder as encoder_module
    from twohded.models import DenseNetEncoder, create_model, load_encoder_weights

    fake = _fake_torchvision_densenet(DenseNetEncoder())
    assert "features.denseblock1.denselayer1.norm.1.weight" in fake
    torch.save(fake, tmp_path / "fake.pth")
    data = (tmp_path / "fake.pth").read_bytes()
    name = f"densenet121-{_sha(data)[:8]}.pth"  # torchvision's naming: the hash prefix checks it
    monkeypatch.setattr(encoder_module, "IMAGENET_URL", server.put(name, data))

    enc = DenseNetEncoder()
    init_downconv = enc.features.downconv0.weight.clone()
    loaded, skipped = load_encoder_weights(enc, "imagenet")
    own = enc.state_dict()
    assert torch.equal(own["features.denseblock1.denselayer1.norm1.weight"],
                       fake["features.denseblock1.denselayer1.norm.1.weight"])
    assert torch.equal(own["features.denseblock4.denselayer16.conv2.weight"],
                       fake["features.denseblock4.denselayer16.conv.2.weight"])
    assert torch.equal(own["features.transition3.conv.weight"], fake["features.transition3.conv.weight"])
    assert torch.equal(own["features.norm5.running_var"], fake["features.norm5.running_var"])
    assert len(loaded) == len(fake) - 3  # all but the 7x7 conv0 and the classifier
    assert sorted(s.split(" ")[0] for s in skipped) == ["classifier.bias", "classifier.weight", "features.conv0.weight"]
    assert torch.equal(enc.features.downconv0.weight, init_downconv)  # no ImageNet counterpart
    assert (cache / "weights" / name).is_file()

    model = create_model("2hded", encoder_weights="imagenet")  # uses the cached file
    assert torch.equal(model.encoder.state_dict()["features.norm0.weight"], fake["features.norm0.weight"])
    # the paper configs' switch: model.encoder_weights=imagenet (default null)
    from pathlib import Path

    from twohded.config import load_config
    from twohded.training.components import _build_model
    from twohded.training.ddp import DistInfo

    paper = Path(__file__).resolve().parents[1] / "configs" / "nyu_paper.yaml"
    assert load_config(paper, ["data.root=x"]).model.encoder_weights is None
    cfg = load_config(paper, ["data.root=x", "model.encoder_weights=imagenet"])
    model, _ = _build_model(cfg, None, torch.device("cpu"), DistInfo(), False)
    assert torch.equal(model.encoder.state_dict()["features.norm5.bias"], fake["features.norm5.bias"])
    with pytest.raises(InputError, match="set it in one place"):
        load_config(paper, ["data.root=x", "model.encoder_weights=imagenet", "model.options.encoder_weights=a.pth"])

    monkeypatch.setattr(encoder_module, "IMAGENET_URL", f"http://127.0.0.1:{_closed_port()}/{name}")
    (cache / "weights" / name).unlink()
    with pytest.raises(InputError, match="cannot reach the server"):
        load_encoder_weights(DenseNetEncoder(), "imagenet")


def test_predict_without_checkpoint_names_the_shipped_model(tmp_path):
    """`twohded predict PHOTO` with no --checkpoint uses the shipped 'dfd-indoor' model; while no
    weights ship, that is one line and exit 2, and nothing is written."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    proc = subprocess.run([sys.executable, "-m", "twohded", "predict", str(photo), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "dfd-indoor" in proc.stderr and "no weights ship yet" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
