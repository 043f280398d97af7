"""Model outputs -> evaluator inputs (evaluation.md §1.5 and §2.5)."""

from __future__ import annotations

import numpy as np
from evalfixtures import cats, seg

from smart.eval.convert import from_detectron2_panoptic, semantic_prediction, semantic_scores
from smart.eval.panoptic import PanopticAccumulator

# dataset ids: things 1, 3; stuff 7, 0 (category id 0 is a real stuff class, as in ADE)
THING = {1: 0, 3: 1}
STUFF = {7: 2, 0: 3}
CATS = cats((1, "person", 1), (3, "car", 1), (7, "sky", 0), (0, "wall", 0))


def test_segments_info_branch_maps_contiguous_ids_back():
    img = np.array([[0, 1, 1], [2, 2, 3]])
    segs = [{"id": 1, "category_id": 1, "isthing": True}, {"id": 2, "category_id": 3, "isthing": False},
            {"id": 3, "category_id": 0, "isthing": True}]
    ids, out = from_detectron2_panoptic(img, segs, thing_dataset_id_to_contiguous_id=THING,
                                        stuff_dataset_id_to_contiguous_id=STUFF)
    assert ids.tolist() == img.tolist()  # 0 stays void
    assert out == [{"id": 1, "category_id": 3}, {"id": 2, "category_id": 0}, {"id": 3, "category_id": 1}]
    assert segs[0]["isthing"] is True  # input untouched


def test_label_divisor_branch():
    # category * 1000 + instance, -1 = void; contiguous 0 (thing), 2 (stuff)
    img = np.array([[-1, 0, 0], [2000, 2000, 1]])
    ids, out = from_detectron2_panoptic(img, None, thing_dataset_id_to_contiguous_id=THING,
                                        stuff_dataset_id_to_contiguous_id=STUFF, label_divisor=1000)
    assert ids.tolist() == [[0, 1, 1], [2001, 2001, 2]]
    assert out == [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}, {"id": 2001, "category_id": 7}]
    gt = np.array([[0, 5, 5], [6, 6, 8]])
    acc = PanopticAccumulator(CATS)
    acc.add(1, gt, [seg(5, 1, gt), seg(6, 7, gt), seg(8, 1, gt)], ids, out)
    assert acc.summary()["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2}


def test_semantic_scores_drop_the_void_column_after_softmax():
    rng = np.random.default_rng(0)
    q, k, h, w = 5, 4, 3, 2
    cl = rng.normal(size=(q, k + 1))
    ml = rng.normal(size=(q, h, w))
    s = semantic_scores(cl, ml)
    assert s.shape == (k, h, w)
    p = np.exp(cl) / np.exp(cl).sum(1, keepdims=True)
    sig = 1 / (1 + np.exp(-ml))
    ref = np.zeros((k, h, w))
    for i in range(q):
        for c in range(k):
            ref[c] += p[i, c] * sig[i]
    np.testing.assert_allclose(s, ref, rtol=1e-12)
    # a query sure of "no object" contributes (almost) nothing
    cl2 = np.concatenate([cl, np.r_[np.zeros(k), 50.0][None]], 0)
    ml2 = np.concatenate([ml, np.full((1, h, w), 50.0)], 0)
    np.testing.assert_allclose(semantic_scores(cl2, ml2), s, atol=1e-15)
    assert semantic_prediction(cl, ml).max() < k
