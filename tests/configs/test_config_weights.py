"""The shipped configs' MODEL.WEIGHTS resolve: detectron2:// and torchvision:// weights load
from the local cache at start-up, and an offline start-up says where to put the file."""

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from panoptic2.config import load_config
from panoptic2.engine import DefaultTrainer
from panoptic2.model_zoo import get_config_file, list_configs
from panoptic2.utils.url_handlers import DownloadError, resolve_url

REPO = Path(__file__).resolve().parents[2]
PFPN = "coco/panoptic_fpn_R_50_1x.yaml"
R50 = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"


@pytest.mark.parametrize("name", [n for n in list_configs() if "Base-" not in Path(n).name])
def test_config_weights_name_a_download(name):
    cfg = load_config(get_config_file(name))
    weights = cfg.MODEL.WEIGHTS
    if "://" not in weights:
        assert weights == "", f"{name}: MODEL.WEIGHTS {weights!r} is a local path"
        return
    url = resolve_url(weights)
    assert url.startswith("https://"), f"{name}: {weights} resolves to {url}"


def _pfpn_trainer(tmp_path):
    cfg = load_config(
        get_config_file(PFPN), ["OUTPUT_DIR", str(tmp_path / "out"), "MODEL.DEVICE", "cpu"]
    )
    assert cfg.MODEL.WEIGHTS == R50
    return DefaultTrainer(cfg)


def test_start_up_loads_the_cached_imagenet_weights(tmp_path, offline_cache):
    # A few blobs of the MSRA R-50 pickle, in its Caffe2 names.
    rng = np.random.default_rng(0)
    blobs = {
        "conv1_w": rng.normal(size=(64, 3, 7, 7)).astype(np.float32),
        "res_conv1_bn_s": rng.normal(size=64).astype(np.float32),
        "res_conv1_bn_b": rng.normal(size=64).astype(np.float32),
        "res2_0_branch2a_w": rng.normal(size=(64, 64, 1, 1)).astype(np.float32),
    }
    path = offline_cache / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)

    trainer = _pfpn_trainer(tmp_path)
    trainer.resume_or_load(resume=False)
    state = trainer.model.state_dict()
    expected = {
        "backbone.bottom_up.stem.conv1.weight": "conv1_w",
        "backbone.bottom_up.stem.conv1.norm.weight": "res_conv1_bn_s",
        "backbone.bottom_up.stem.conv1.norm.bias": "res_conv1_bn_b",
        "backbone.bottom_up.res2.0.conv1.weight": "res2_0_branch2a_w",
    }
    for ours, blob in expected.items():
        assert torch.equal(state[ours], torch.from_numpy(blobs[blob])), ours


def test_offline_start_up_names_the_file_to_place(tmp_path, offline_cache):
    trainer = _pfpn_trainer(tmp_path)
    path = offline_cache / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    with pytest.raises(DownloadError, match=f"put it at\n  {path}\n"):
        trainer.resume_or_load(resume=False)


@pytest.mark.slow
def test_train_net_offline_message(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: the proxy refuses at once
        s.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "pythonpath")}
    env.update(
        PANOPTIC2_CACHE=str(tmp_path / "cache"), https_proxy=dead_proxy, HTTPS_PROXY=dead_proxy
    )
    args = ["--config-file", f"configs/{PFPN}", "OUTPUT_DIR", str(tmp_path / "out")]
    out = subprocess.run(
        [sys.executable, "tools/train_net.py", *args, "MODEL.DEVICE", "cpu"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode != 0
    path = tmp_path / "cache" / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    assert f"Cannot download {R50}" in out.stderr
    assert f"put it at\n  {path}\n" in out.stderr
    assert not path.exists()
