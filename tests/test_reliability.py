"""Bad input that used to pass silently or end in a traceback: each is now one error naming the file and
the field, raised before any work is done."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smart.errors import ConfigError, DatasetError

REPO = Path(__file__).resolve().parents[1]


def test_a_repeated_yaml_key_is_an_error(tmp_path):
    from smart.config import load_params

    text = (REPO / "params.yaml").read_text()
    dup = text.replace("  overlap_threshold: 0.8\n", "  overlap_threshold: 0.8\n  overlap_threshold: 0.5\n", 1)
    assert dup != text
    (tmp_path / "params.yaml").write_text(dup)
    with pytest.raises(ConfigError, match=r"params.yaml: the key 'overlap_threshold' appears twice .*lines \d+ and"):
        load_params(tmp_path / "params.yaml")


def test_snakemake_refuses_a_repeated_key_when_the_dag_is_parsed(tmp_path):
    import shutil

    shutil.copy(REPO / "Snakefile", tmp_path / "Snakefile")
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    (tmp_path / "smart").symlink_to(REPO / "smart")
    text = (REPO / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text.replace("profile: mini", "profile: mini\nprofile: paper", 1))
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "the key 'profile' appears twice" in r.stdout + r.stderr


@pytest.mark.parametrize("reader", ["label", "panoptic"])
def test_a_jpeg_named_png_is_refused_as_labels(tmp_path, reader):
    from smart.io import read_label_map, read_panoptic_png

    arr = np.zeros((16, 16, 3), np.uint8)
    arr[4:12, 4:12] = 7
    path = tmp_path / "labels.png"
    Image.fromarray(arr[..., 0] if reader == "label" else arr).save(path, format="JPEG")
    with pytest.raises(DatasetError, match=r"labels.png.*stored as JPEG, a lossy format"):
        (read_label_map if reader == "label" else read_panoptic_png)(path)
    Image.fromarray(arr[..., 0] if reader == "label" else arr).save(path, format="PNG")
    (read_label_map if reader == "label" else read_panoptic_png)(path)  # the same pixels as PNG are fine


# ------------------------------------------------------------------------------------------ weights
def _flip(path: Path, *, offset: float = 0.6, n: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * offset)
    for i in range(start, min(start + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture()
def clip_dir(tmp_path):
    import torch

    from smart.train.clip_pretrain import MiniClipConfig, build_model, save_checkpoint_dir

    cfg = MiniClipConfig.from_dict(dict(embed_dim=32, image_size=32, patch_size=8, vision_width=32, vision_layers=1,
                                        vision_head_width=16, context_length=32, text_width=32, text_heads=2,
                                        text_layers=1, steps=3, batch_size=8, warmup=1, log_every=1, bf16=False,
                                        eval_per_class=1))
    torch.manual_seed(0)
    return save_checkpoint_dir(build_model(cfg), cfg, tmp_path / "clip")


@pytest.fixture()
def generator_dir(tmp_path):
    from smart.model.mask_generator import build_mask_generator

    gen = build_mask_generator({"name": "tiny", "backend": "hf", "pretrained": None, "resize": False})
    gen.save_pretrained(tmp_path / "gen")
    return tmp_path / "gen"


def test_pretrained_weights_carry_a_checksum_checked_at_load(clip_dir, generator_dir):
    from smart.errors import InputError
    from smart.model.clip_classifier import create_clip
    from smart.model.mask_generator import build_mask_generator

    assert (clip_dir / "SHA256SUMS").read_text().count("\n") == 2
    assert "model.safetensors" in (generator_dir / "SHA256SUMS").read_text()
    create_clip(f"local-dir:{clip_dir}")  # intact: loads
    build_mask_generator({"name": "tiny", "backend": "hf", "pretrained": str(generator_dir), "resize": False})
    _flip(clip_dir / "open_clip_model.safetensors")
    with pytest.raises(InputError, match=r"open_clip_model.safetensors \[sha256\]: the file changed .*pretrain_clip"):
        create_clip(f"local-dir:{clip_dir}")
    _flip(generator_dir / "model.safetensors")
    with pytest.raises(InputError, match=r"model.safetensors \[sha256\]: the file changed"):
        build_mask_generator({"name": "tiny", "backend": "hf", "pretrained": str(generator_dir), "resize": False})


def test_truncated_weights_without_a_checksum_are_named(clip_dir, generator_dir):
    from smart.errors import InputError
    from smart.model.clip_classifier import create_clip
    from smart.model.mask_generator import build_mask_generator

    for d in (clip_dir, generator_dir):
        (d / "SHA256SUMS").unlink()  # weights from elsewhere: no record to compare with
    _truncate(clip_dir / "open_clip_model.safetensors")
    with pytest.raises(InputError, match=r"clip.*cannot read the CLIP weights \(truncated or corrupt"):
        create_clip(f"local-dir:{clip_dir}")
    _truncate(generator_dir / "model.safetensors")
    with pytest.raises(InputError, match=r"gen.*cannot (load|read)"):
        build_mask_generator({"name": "tiny", "backend": "hf", "pretrained": str(generator_dir), "resize": False})


def test_trained_weights_carry_a_checksum_checked_at_load(trained, tmp_path):
    import torch

    from smart.errors import InputError
    from smart.train.checkpoint import atomic_save, load_trained, state_sha256

    data = torch.load(trained / "model.pt", weights_only=True)
    data["weights_sha256"] = state_sha256(data["trainable_state"], data["generator_state"])
    atomic_save(data, tmp_path / "model.pt")
    load_trained(tmp_path / "model.pt")
    key = sorted(data["trainable_state"])[0]
    data["trainable_state"][key].view(-1)[0] += 1e-3  # one changed weight
    atomic_save(data, tmp_path / "bad.pt")
    with pytest.raises(InputError, match=r"bad.pt \[weights_sha256\]: its trained weights changed"):
        load_trained(tmp_path / "bad.pt")


def test_a_stale_proposal_cache_is_refused():
    import torch

    from smart.data.sources import StoreSource
    from smart.errors import InputError

    class Store:
        image_ids = ["a"]

        def get(self, image_id):
            return {"mask_logits": torch.zeros(3, 8, 8), "original_size": (32, 32)}

    src = StoreSource(Store(), name="data/proposals/g/ds")
    assert src.get("a", image_size=(32, 32)).shape == (3, 8, 8)
    with pytest.raises(InputError, match=r"data/proposals/g/ds \[original_size\]: stale cache.*32x32 image, which "
                                         r"is now 48x32.*forcerun"):
        src.get("a", image_size=(32, 48))
