"""LSJ + flip keep image, panoptic GT and proposal masks aligned (smart/train/augment.py)."""

import numpy as np
import pytest
import torch

from smart.train.augment import IMAGE_PAD_VALUE, LSJTransform, augment_sample, sample_transform

H, W = 48, 64
COLOURS = {1: (250, 0, 0), 2: (0, 250, 0), 3: (0, 0, 250), 4: (250, 250, 0)}


def scene():
    """A 48x64 image of 4 rectangles (segment ids 1-4; the rest is void) and its panoptic ids."""
    pan = np.zeros((H, W), dtype=np.int64)
    pan[4:30, 3:25] = 1
    pan[10:44, 30:60] = 2
    pan[32:46, 5:22] = 3
    pan[2:9, 40:62] = 4
    img = np.zeros((H, W, 3), dtype=np.uint8)
    for sid, c in COLOURS.items():
        img[pan == sid] = c
    segs = [{"id": s, "train_id": s - 1, "iscrowd": 0} for s in COLOURS]
    return {"image": img, "pan_ids": pan, "segments_info": segs}


def gt_logits(pan, stride):
    """±10 logits of each segment at 1/stride resolution (area-averaged masks), covering the image."""
    m = torch.stack([torch.from_numpy(pan == s).float() for s in COLOURS])  # (4, H, W)
    m = torch.nn.functional.avg_pool2d(m[None], stride)[0] if stride > 1 else m  # (4, H/s, W/s)
    return (m - 0.5) * 20.0


def boundary(m):
    """Pixels whose 3x3 neighbourhood (outside the crop counts as background) is not uniform."""
    pad = np.pad(m, 1, mode="constant", constant_values=False)
    win = np.stack([pad[i:i + m.shape[0], j:j + m.shape[1]] for i in range(3) for j in range(3)])
    return win.any(0) & ~win.all(0)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("stride", [1, 4])
def test_proposals_follow_the_gt_under_random_lsj(stride):
    s = scene()
    props = gt_logits(s["pan_ids"], stride)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(25):
        out = augment_sample(s, rng, crop=64, min_scale=0.5, max_scale=2.0, flip_prob=0.5, proposals=props,
                             proposal_stride=stride, pad_logit=-20.0)
        pan, p = out["pan_ids"], out["proposals"]  # (64, 64), (4, 64/stride, 64/stride)
        assert pan.shape == (64, 64) and p.shape == (4, 64 // stride, 64 // stride)
        gt = torch.stack([torch.from_numpy(pan == sid) for sid in COLOURS]).float()  # (4, 64, 64)
        if stride > 1:
            gt = torch.nn.functional.avg_pool2d(gt[None], stride)[0]
        for k, sid in enumerate(COLOURS):
            g = (gt[k] > 0.5).numpy()
            if not g.any():
                continue
            mismatch = g ^ (p[k] > 0).numpy()
            # they may differ only on the GT boundary (ties of nearest vs bilinear), never elsewhere
            assert not (mismatch & ~boundary(g)).any(), (sid, out["transform"])
            if min(g.any(0).sum(), g.any(1).sum()) >= 8:  # not a sliver
                assert iou(g, (p[k] > 0).numpy()) > 0.75, (sid, out["transform"])
            checked += 1
        # the image agrees with the GT: each visible segment has its colour at its interior pixels
        img = out["image"].permute(1, 2, 0).numpy()
        palette = np.array([(0, 0, 0)] + list(COLOURS.values()), dtype=np.float32)  # (5, 3)
        for sid in COLOURS:
            inner = pan == sid
            for _ in range(2):  # erode by 2 px: away from the (anti-aliased) boundary
                inner[1:-1, 1:-1] &= (inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:])
                inner[[0, -1]] = False
                inner[:, [0, -1]] = False
            if inner.sum():
                nearest = np.abs(img[inner][:, None] - palette[None]).sum(-1).argmin(1)  # palette index per pixel
                assert (nearest == list(COLOURS).index(sid) + 1).mean() > 0.95, (sid, out["transform"])
        # segments_info keeps exactly the visible segments
        assert {x["id"] for x in out["segments_info"]} == set(np.unique(pan).tolist()) - {0}
    assert checked > 40


def test_flip_without_rescale_is_exact():
    s = scene()
    props = gt_logits(s["pan_ids"], 1) + torch.linspace(0, 1, W)  # asymmetric values
    t = LSJTransform(height=H, width=W, flip=True, new_h=H, new_w=W, y0=0, x0=0, crop=64)
    img = t.apply_image(s["image"])
    assert torch.equal(img[:, :H, :W], torch.from_numpy(s["image"][:, ::-1].copy()).permute(2, 0, 1).float())
    assert (img[:, H:] == IMAGE_PAD_VALUE).all()
    pan = t.apply_segmentation(s["pan_ids"])
    assert np.array_equal(pan[:H, :W], s["pan_ids"][:, ::-1]) and (pan[H:] == 0).all()
    p = t.apply_proposals(props, out_size=(64, 64), pad_logit=-7.0)
    assert torch.allclose(p[:, :H, :W], props.flip(-1), atol=1e-4)
    assert (p[:, H:] == -7.0).all()


def test_padding_and_crop_geometry():
    s = scene()
    t = sample_transform(np.random.default_rng(1), H, W, crop=64, min_scale=0.5, max_scale=0.5, flip_prob=0.0)
    assert (t.new_h, t.new_w) == (24, 32) and (t.y0, t.x0) == (0, 0) and not t.flip  # min(0.5·64/48, 0.5·64/64)
    out = augment_sample(s, np.random.default_rng(1), crop=64, min_scale=0.5, max_scale=0.5, flip_prob=0.0,
                         proposals=gt_logits(s["pan_ids"], 4), proposal_stride=4, pad_logit=-20.0)
    assert (out["pan_ids"][24:] == 0).all() and (out["pan_ids"][:, 32:] == 0).all()
    assert (out["image"][:, 24:] == IMAGE_PAD_VALUE).all()
    assert (out["proposals"][:, 6:] == -20.0).all() and (out["proposals"][:, :, 8:] == -20.0).all()
    big = sample_transform(np.random.default_rng(2), H, W, crop=64, min_scale=2.0, max_scale=2.0, flip_prob=0.0)
    assert (big.new_h, big.new_w) == (96, 128)  # min(2·64/48, 2·64/64) = 2: the long side fills 2 crops
    assert 0 <= big.y0 <= 32 and 0 <= big.x0 <= 64


def test_same_seed_same_sample():
    s = scene()
    props = gt_logits(s["pan_ids"], 4)
    a = augment_sample(s, np.random.default_rng([5, 9]), crop=64, min_scale=0.1, max_scale=2.0, flip_prob=0.5,
                       proposals=props)
    b = augment_sample(s, np.random.default_rng([5, 9]), crop=64, min_scale=0.1, max_scale=2.0, flip_prob=0.5,
                       proposals=props)
    assert a["transform"] == b["transform"]
    assert torch.equal(a["image"], b["image"]) and np.array_equal(a["pan_ids"], b["pan_ids"])
    assert torch.equal(a["proposals"], b["proposals"])
