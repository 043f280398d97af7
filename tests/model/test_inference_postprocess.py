"""Semantic / panoptic post-processing (smart/model/inference.py; method-spec §4.10, §5.6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smart.eval.convert import semantic_scores
from smart.eval.panoptic import PanopticAccumulator
from smart.model.inference import (
    InferenceConfig,
    panoptic_for_eval,
    panoptic_inference,
    postprocess,
    resize_mask_logits,
    semantic_for_eval,
    semantic_inference,
)

BIG = 20.0


def _onehot(labels, k, value=BIG):
    """(Q,) labels (k = void) → (Q, k+1) logits."""
    out = torch.zeros(len(labels), k + 1)
    out[torch.arange(len(labels)), torch.tensor(labels)] = value
    return out


def _mask(h, w, rows=None, cols=None):
    m = torch.full((h, w), -BIG)
    m[rows if rows is not None else slice(None), cols if cols is not None else slice(None)] = BIG
    return m


def test_semantic_matches_the_numpy_reference_and_never_predicts_void():
    torch.manual_seed(0)
    cl = torch.randn(2, 5, 4)
    cl[..., -1] += 6.0  # void dominates every query
    ml = torch.randn(2, 5, 3, 7)
    s = semantic_inference(cl, ml)
    assert s.shape == (2, 3, 3, 7)
    for b in range(2):
        np.testing.assert_allclose(s[b].numpy(), semantic_scores(cl[b].numpy(), ml[b].numpy()), rtol=1e-5)
    res = postprocess({"pred_logits": cl, "pred_masks": ml}, tasks=("semantic",))
    for r in res:
        assert r["sem_label"].max() < 3  # labels 0..K-1 only


def test_void_query_is_dropped_and_unassigned_pixels_are_zero():
    K = 3
    masks = torch.stack([_mask(4, 4, rows=slice(0, 2)), _mask(4, 4, rows=slice(2, 4))])  # (2, 4, 4)
    cl = _onehot([1, K], K)  # query 1's arg-max is void
    pan, segs = panoptic_inference(cl, masks, is_thing=[True, True, False])
    assert segs == [{"id": 1, "isthing": True, "category_id": 1}]
    assert pan[:2].eq(1).all() and pan[2:].eq(0).all()
    assert pan.dtype == torch.int32


def test_object_mask_threshold():
    masks = torch.stack([_mask(4, 4, rows=slice(0, 2)), _mask(4, 4, rows=slice(2, 4))])
    cl = torch.tensor([[3.0, 0.0, 0.0], [0.5, 0.0, 0.0]])  # probs ≈ 0.91 and ≈ 0.45 for class 0
    _, segs = panoptic_inference(cl, masks, is_thing=[True, False])
    assert len(segs) == 1
    _, segs = panoptic_inference(cl, masks, is_thing=[True, False], object_mask_threshold=0.0)
    assert len(segs) == 2


def test_stuff_segments_of_one_class_are_merged_things_are_not():
    masks = torch.stack([_mask(4, 4, cols=slice(0, 1)), _mask(4, 4, cols=slice(1, 2)),
                         _mask(4, 4, cols=slice(2, 3)), _mask(4, 4, cols=slice(3, 4))])
    cl = _onehot([2, 2, 0, 0], 3)  # class 2 = stuff, class 0 = thing
    pan, segs = panoptic_inference(cl, masks, is_thing=[True, True, False])
    assert [s["id"] for s in segs] == [1, 2, 3]  # ids start at 1, no gaps
    assert segs[0] == {"id": 1, "isthing": False, "category_id": 2}
    assert [s["category_id"] for s in segs[1:]] == [0, 0] and all(s["isthing"] for s in segs[1:])
    assert pan[:, :2].eq(1).all()  # both stuff columns → one segment
    assert pan[:, 2].eq(2).all() and pan[:, 3].eq(3).all()


def test_overlap_threshold_drops_mostly_covered_segments():
    # query 0 covers the left half with a higher score; query 1 covers columns 1..3 (3 px per row),
    # of which it wins only columns 2..3: won / original = 2/3
    m0 = _mask(4, 4, cols=slice(0, 2))
    m1 = _mask(4, 4, cols=slice(1, 4))
    cl = torch.tensor([[9.0, -9.0, -9.0], [-9.0, 4.0, -9.0]])
    masks = torch.stack([m0, m1])
    pan, segs = panoptic_inference(cl, masks, is_thing=[True, True], overlap_threshold=0.8)
    assert [s["category_id"] for s in segs] == [0]
    assert pan[:, 2:].eq(0).all()  # the dropped query's pixels stay void
    pan, segs = panoptic_inference(cl, masks, is_thing=[True, True], overlap_threshold=0.6)
    assert [s["category_id"] for s in segs] == [0, 1]
    assert pan[:, 2:].eq(2).all() and pan[:, :2].eq(1).all()


def test_no_kept_query_gives_an_all_void_map():
    pan, segs = panoptic_inference(_onehot([2, 2], 2), torch.randn(2, 3, 3), is_thing=[True, False])
    assert segs == [] and pan.eq(0).all()


def test_resize_crops_padding_and_resizes_to_the_original_size():
    # padded input 16×16, valid region 12×8, original image 24×16; mask logits at 1/4: 4×4
    m = torch.full((1, 1, 4, 4), -BIG)
    m[..., :3, :2] = BIG  # exactly the valid region (12×8 at full res)
    out = resize_mask_logits(m, input_size=(16, 16), image_sizes=[(12, 8)], output_sizes=[(24, 16)])
    assert out[0].shape == (1, 24, 16)
    assert (out[0] > 0).float().mean() > 0.9  # the crop removed the padding
    res = postprocess({"pred_logits": _onehot([0], 1)[None], "pred_masks": m}, is_thing=[True],
                      input_size=(16, 16), image_sizes=[(12, 8)], output_sizes=[(24, 16)])
    assert res[0]["sem_label"].shape == (24, 16)
    assert res[0]["panoptic_seg"][0].shape == (24, 16)


def test_eval_formats_and_pq_on_a_small_case():
    # contiguous: 0 = person (thing, dataset id 1), 1 = sky (stuff, dataset id 7)
    gt = np.zeros((4, 4), np.int64)
    gt[:2] = 10
    gt[2:, :2] = 11
    gt[2:, 2:] = 12
    gt_segs = [{"id": 10, "category_id": 7, "iscrowd": 0, "area": 8},
               {"id": 11, "category_id": 1, "iscrowd": 0, "area": 4},
               {"id": 12, "category_id": 1, "iscrowd": 0, "area": 4}]
    masks = torch.stack([_mask(4, 4, rows=slice(0, 2)), _mask(4, 4, rows=slice(2, 4), cols=slice(0, 2)),
                         _mask(4, 4, rows=slice(2, 4), cols=slice(2, 4))])
    res = postprocess({"pred_logits": _onehot([1, 0, 0], 2)[None], "pred_masks": masks[None]},
                      is_thing=[True, False], cfg=InferenceConfig(object_mask_threshold=0.0))
    ids, segs = panoptic_for_eval(*res[0]["panoptic_seg"], dataset_ids=[1, 7], is_thing=[True, False])
    assert sorted(s["category_id"] for s in segs) == [1, 1, 7]
    acc = PanopticAccumulator([{"id": 1, "isthing": 1, "name": "person"}, {"id": 7, "isthing": 0, "name": "sky"}])
    acc.add(0, gt, gt_segs, ids, segs)
    assert acc.summary()["All"]["pq"] == pytest.approx(1.0)
    sem = semantic_for_eval(res[0]["sem_label"])
    assert sem.dtype == np.int64 and sem.tolist() == [[1] * 4, [1] * 4, [0] * 4, [0] * 4]


def test_is_thing_length_is_checked():
    with pytest.raises(ValueError, match="is_thing"):
        panoptic_inference(_onehot([0], 3), torch.randn(1, 2, 2), is_thing=[True])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    cl = torch.randn(2, 10, 6) * 3
    ml = torch.randn(2, 10, 8, 8) * 4
    kw = {"is_thing": [True, True, False, False, True], "input_size": (32, 32),
          "image_sizes": [(32, 24), (20, 32)], "output_sizes": [(64, 48), (40, 64)],
          "cfg": InferenceConfig(object_mask_threshold=0.3)}
    cpu = postprocess({"pred_logits": cl, "pred_masks": ml}, **kw)
    gpu = postprocess({"pred_logits": cl.cuda(), "pred_masks": ml.cuda()}, **kw)
    for a, b in zip(cpu, gpu):
        agree = (a["sem_label"] == b["sem_label"].cpu()).float().mean()
        assert agree > 0.99  # bf16 upsampling on CUDA
        assert b["panoptic_seg"][0].is_cuda
