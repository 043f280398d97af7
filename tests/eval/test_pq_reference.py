"""Cross-checks of smart.eval.panoptic against independent PQ implementations on random fixtures.

* panopticapi-lite 0.2.0 (cocodataset/panopticapi's own code, repackaged; installed with --no-deps,
  optional): run on one core, its result must be **bit-identical** (same summation order), including
  crowd, VOID, GT areas that differ from the PNG and string image ids.
* hotcoco 1.3.0 (a Rust port, a project dependency): same counts, scores within 1e-12 (it sums the
  IoUs in another order); integer image ids only.

The fixtures also show that the streaming path, the file path and the multi-process file path agree
exactly.
"""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing

import numpy as np
import pytest
from evalfixtures import cats, random_panoptic, write_set

from smart.eval.io import PanopticPredictionWriter
from smart.eval.panoptic import PanopticAccumulator, evaluate_panoptic_files

CATS = cats((0, "wall", 0), (1, "floor", 0), (2, "person", 1), (3, "car", 1), (7, "tree", 0), (9, "dog", 1))
SPLITS = ("All", "Things", "Stuff")


def make(tmp_path, seed, n=6, string_ids=False, categories=CATS, **kw):
    rng = np.random.default_rng(seed)
    g, p = random_panoptic(rng, n, categories, string_ids=string_ids, **kw)
    gj, gd = write_set(tmp_path, "gt", g, categories)
    pj, pd = write_set(tmp_path, "pred", p, categories)
    return (g, p), (str(gj), str(pj), str(gd), str(pd))


def quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def same(a, b):
    return a == b or (isinstance(a, float) and math.isnan(a) and b is None)


@pytest.fixture
def panopticapi_one_core(monkeypatch):
    pe = pytest.importorskip("panopticapi.evaluation", reason="panopticapi(-lite) not installed")
    monkeypatch.setattr(multiprocessing, "cpu_count", lambda: 1)  # one core: the summation order is defined
    return pe


@pytest.mark.parametrize("string_ids", [False, True])
def test_bit_identical_to_panopticapi(tmp_path, panopticapi_one_core, string_ids):
    pe = panopticapi_one_core
    checked = 0
    for seed in range(25):
        _, files = make(tmp_path / str(seed), seed, string_ids=string_ids)
        mine = evaluate_panoptic_files(*files[:2], files[2], files[3], show_progress=False)
        try:
            ref = quiet(pe.pq_compute, *files)
        except ZeroDivisionError:  # a split without counted category: we report NaN instead
            assert any(mine[s]["n"] == 0 for s in SPLITS)
            continue
        for s in SPLITS:
            assert {k: mine[s][k] for k in ("pq", "sq", "rq", "n")} == ref[s], (seed, s)
        assert set(ref["per_class"]) == set(mine["per_class"])
        for cid, r in ref["per_class"].items():
            assert {k: mine["per_class"][cid][k] for k in ("pq", "sq", "rq")} == r, (seed, cid)
        checked += 1
    assert checked >= 20


def splits_equal_panopticapi(pe, files, **kw) -> bool:
    """Our All / Things / Stuff equal panopticapi's on ``files``; False if panopticapi divides by zero."""
    mine = evaluate_panoptic_files(*files[:2], files[2], files[3], show_progress=False, **kw)
    try:
        ref = quiet(pe.pq_compute, *files)
    except ZeroDivisionError:
        return False
    for s in SPLITS:
        assert {k: mine[s][k] for k in ("pq", "sq", "rq", "n")} == ref[s], (files[0], s)
    return True


def test_agrees_with_panopticapi_on_crowd_heavy_void_heavy_sets(tmp_path, panopticapi_one_core):
    for seed in range(10):
        _, files = make(tmp_path / str(seed), 1000 + seed, n=4, crowd_p=0.5, void_p=0.4, area_jitter_p=0.5)
        splits_equal_panopticapi(panopticapi_one_core, files)


def test_empty_gt_stuff_bit_identical_to_panopticapi(tmp_path, panopticapi_one_core):
    """GT stuff segments listed with no pixel (Mask2Former's ADE20K-150 GT) are false negatives."""
    checked = sum(splits_equal_panopticapi(panopticapi_one_core,
                                           make(tmp_path / str(seed), 2000 + seed, empty_stuff_p=0.7)[1],
                                           empty_gt_stuff=True) for seed in range(12))
    assert checked >= 8


def test_empty_gt_stuff_counts_as_false_negatives(tmp_path):
    (g, p), files = make(tmp_path / "a", 7, empty_stuff_p=1.0)
    n_empty = 0
    for im in g:
        present = set(np.unique(im["ids"]).tolist())
        n_empty += sum(s["id"] not in present for s in im["segments"])
    assert n_empty == len(g)
    mine = evaluate_panoptic_files(*files[:2], files[2], files[3], empty_gt_stuff=True, show_progress=False)
    for im in g:  # the same GT without those segments
        present = set(np.unique(im["ids"]).tolist())
        im["segments"] = [s for s in im["segments"] if s["id"] in present]
    gj, gd = write_set(tmp_path / "b", "gt", g, CATS)
    pj, pd = write_set(tmp_path / "b", "pred", p, CATS)
    without = evaluate_panoptic_files(gj, pj, gd, pd, show_progress=False)
    fn = sum(c["fn"] for c in mine["per_class"].values())
    assert fn == sum(c["fn"] for c in without["per_class"].values()) + n_empty
    assert sum(c["tp"] for c in mine["per_class"].values()) == sum(c["tp"] for c in without["per_class"].values())


def test_agrees_with_hotcoco(tmp_path):
    hp = pytest.importorskip("hotcoco.panoptic")
    for seed in range(25):
        _, files = make(tmp_path / str(seed), 500 + seed, crowd_p=0.3)
        mine = evaluate_panoptic_files(*files[:2], files[2], files[3], show_progress=False)
        ref = quiet(hp.pq_compute, *files)
        for s in SPLITS:
            assert mine[s]["n"] == ref[s]["n"]
            for k in ("pq", "sq", "rq"):
                if mine[s]["n"] == 0:
                    assert math.isnan(mine[s][k]) and ref[s][k] == -1  # hotcoco's sentinel
                else:
                    assert mine[s][k] == pytest.approx(ref[s][k], rel=0, abs=1e-12)
        for cid, r in ref["per_class"].items():
            m = mine["per_class"][cid]
            assert (m["tp"], m["fp"], m["fn"]) == (r["tp"], r["fp"], r["fn"]), (seed, cid)
            if m["counted"]:
                for k in ("pq", "sq", "rq"):
                    assert m[k] == pytest.approx(r[k], rel=0, abs=1e-12)


def test_streaming_equals_files_equals_workers(tmp_path):
    (gts, preds), files = make(tmp_path, 77, n=12)
    acc = PanopticAccumulator(CATS)
    for g, p in zip(gts, preds):
        acc.add(g["image_id"], g["ids"], g["segments"], p["ids"], p["segments"])
    stream = acc.summary()
    one = evaluate_panoptic_files(*files[:2], files[2], files[3], show_progress=False)
    two = evaluate_panoptic_files(*files[:2], files[2], files[3], workers=2, show_progress=False)
    one.pop("inputs")
    two.pop("inputs")
    assert _nan_equal(stream, one) and _nan_equal(one, two)


def test_prediction_writer_round_trip_gives_same_numbers(tmp_path):
    """The pipeline may stream; writing the same predictions as COCO panoptic files scores the same."""
    (gts, preds), files = make(tmp_path, 3, n=8)
    acc = PanopticAccumulator(CATS)
    with PanopticPredictionWriter(tmp_path / "written.json", categories=CATS) as w:
        for g, p in zip(gts, preds):
            acc.add(g["image_id"], g["ids"], g["segments"], p["ids"], p["segments"])
            w.add(p["image_id"], p["ids"], p["segments"])
    res = evaluate_panoptic_files(files[0], tmp_path / "written.json", files[2], show_progress=False)
    res.pop("inputs")
    assert _nan_equal(acc.summary(), res)


def _nan_equal(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b
