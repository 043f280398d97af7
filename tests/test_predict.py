"""`python -m smart predict` (smart/predict.py): vocabularies, images of any kind, outputs that the
evaluators read back, the same numbers as evaluation, and bad input stopped before anything is written."""

import io
import json
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from smart.errors import InputError
from smart.predict import (
    build_vocabulary,
    collect_images,
    load_image,
    output_names,
    parse_vocabulary,
    read_vocabulary_file,
    working_size,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ------------------------------------------------------------------------------------------ vocabularies
def test_vocabulary_string_as_odise():
    v = build_vocabulary(parse_vocabulary("cat, kitten; dog ;grass; sky"), stuff=["grass", "SKY"])
    assert [c.synonyms for c in v] == [("cat", "kitten"), ("dog",), ("grass",), ("sky",)]
    assert v.thing_mask == [True, True, False, False]
    assert [c.id for c in v] == [1, 2, 3, 4] and [c.train_id for c in v] == [0, 1, 2, 3]


@pytest.mark.parametrize("text, match", [
    ("", "empty"), (" ; ;", "empty"), ("cat, ; dog", "blank"),
    ("cat; dog; Cat", "'Cat' appears in class 1"), ("cat, kitten, kitten", "twice in the same class"),
    ("dog; puppy, dog", "'dog' appears in class 1"),
])
def test_bad_vocabularies_are_refused(text, match):
    with pytest.raises(InputError, match=match):
        build_vocabulary(parse_vocabulary(text))


def test_stuff_must_name_a_class():
    with pytest.raises(InputError, match="--stuff"):
        build_vocabulary([["cat"]], stuff=["sky"])


def test_vocabulary_files(tmp_path):
    (tmp_path / "v.txt").write_text("# my classes\ncat, kitten\n\ndog  # pets\nsky\n")
    v = read_vocabulary_file(tmp_path / "v.txt", stuff=["sky"])
    assert v.names == ["cat", "dog", "sky"] and v.thing_mask == [True, True, False]
    (tmp_path / "fc.txt").write_text("7:person,child\n9:tree\n")
    v = read_vocabulary_file(tmp_path / "fc.txt")
    assert [(c.id, c.synonyms) for c in v] == [(7, ("person", "child")), (9, ("tree",))]
    (tmp_path / "v.json").write_text(json.dumps({"categories": [
        {"id": 3, "name": "car", "synonyms": ["car", "automobile"], "isthing": 1},
        {"id": 5, "name": "road", "isthing": 0}]}))
    v = read_vocabulary_file(tmp_path / "v.json")
    assert [(c.id, c.synonyms, c.isthing) for c in v] == [(3, ("car", "automobile"), True), (5, ("road",), False)]
    (tmp_path / "dup.json").write_text(json.dumps([{"name": "car"}, {"name": "car"}]))
    with pytest.raises(InputError, match="dup.json"):
        read_vocabulary_file(tmp_path / "dup.json")
    with pytest.raises(InputError, match="not found"):
        read_vocabulary_file(tmp_path / "missing.txt")


# ------------------------------------------------------------------------------------------ images
def _save(img: Image.Image, path, fmt=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kw)
    return path


def test_images_of_every_kind(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    # EXIF orientation 6 (rotate 90° clockwise to view): a 50x30 file is shown 30 wide, 50 high
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(rgb, tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "rot.jpg").shape == (50, 30, 3)
    _save(rgb.convert("L"), tmp_path / "grey.png")
    g = load_image(tmp_path / "grey.png")
    assert g.shape == (30, 50, 3) and (g[..., 0] == g[..., 2]).all()
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    _save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png")
    a = load_image(tmp_path / "alpha.png")
    assert a[0, 0].tolist() == [200, 0, 0] and a[3, 3].tolist() == [255, 255, 255]  # composited on white
    _save(rgb, tmp_path / "w.webp", lossless=True)
    assert (load_image(tmp_path / "w.webp") == np.asarray(rgb)).all()
    _save(Image.fromarray((np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)), tmp_path / "deep.png")
    d = load_image(tmp_path / "deep.png")
    assert d.dtype == np.uint8 and d.max() == 255
    _save(rgb.convert("P"), tmp_path / "pal.png")
    assert load_image(tmp_path / "pal.png").shape == (30, 50, 3)
    _save(rgb, tmp_path / "misnamed.png", fmt="JPEG")  # decoded by content, whatever the name says
    assert load_image(tmp_path / "misnamed.png").shape == (30, 50, 3)


def test_truncated_and_unreadable_images_are_named(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError, match="text.jpg.*cannot decode"):
        load_image(tmp_path / "text.jpg")


def test_collect_images_from_files_folders_and_globs(tmp_path):
    img = Image.new("RGB", (4, 4))
    for rel in ("a/x.jpg", "a/sub/y.png", "b/x.webp", "b/notes.txt"):
        _save(img, tmp_path / rel) if not rel.endswith(".txt") else (tmp_path / rel).write_text("hi")
    got = collect_images([str(tmp_path / "a"), str(tmp_path / "b" / "*.webp"), str(tmp_path / "a" / "x.jpg")])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["a/sub/y.png", "a/x.jpg", "b/x.webp"]
    assert output_names(got) == ["y", "x", "x-2"]
    with pytest.raises(InputError, match="no such file"):
        collect_images([str(tmp_path / "nope.jpg")])
    with pytest.raises(InputError, match="matches no image"):
        collect_images([str(tmp_path / "*.gif")])


def test_working_size_only_reduces():
    assert working_size(600, 4000, (800, 1333)) == (200, 1333)
    assert working_size(300, 200, (800, 1333)) == (300, 200)  # small images go through unchanged
    assert working_size(96, 96, (96, 160)) == (96, 96)


# ------------------------------------------------------------------------------------------ end to end
def _predict(trained, *args):
    from smart.cli import main as cli

    torch.manual_seed(1)  # the tiny generator's random init
    return cli(["predict", *map(str, args), "--params", str(trained / "params.yaml"), "--checkpoint",
                str(trained / "model.pt"), "--threads", "1", "--text-cache", str(trained / "text_cache")])


def test_predict_writes_every_output_at_each_images_size(trained, tmp_path):
    from smart.eval.panoptic import evaluate_panoptic_files
    from smart.io import read_label_map, read_panoptic_png

    rng = np.random.default_rng(0)
    ims = tmp_path / "in"
    _save(Image.fromarray(rng.integers(0, 255, (7, 5, 3), dtype=np.uint8)), ims / "tiny.png")
    _save(Image.fromarray(rng.integers(0, 255, (90, 150, 3), dtype=np.uint8)), ims / "wide.jpg")
    _save(Image.fromarray(rng.integers(0, 255, (400, 300, 3), dtype=np.uint8)), ims / "big.webp")  # > test size
    _save(Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)), ims / "grey.png")
    out = tmp_path / "out"
    assert _predict(trained, ims, "--vocab", "red thing; blue thing, bluish thing; ground", "--stuff", "ground",
                    "--out", out, "--batch-size", "2") == 0
    pan = json.loads((out / "panoptic.json").read_text())
    assert [c["name"] for c in pan["categories"]] == ["red thing", "blue thing", "ground"]
    assert [c["isthing"] for c in pan["categories"]] == [1, 1, 0]
    sizes = {"tiny": (7, 5), "wide": (90, 150), "big": (400, 300), "grey": (64, 64)}
    assert {im["id"] for im in pan["images"]} == set(sizes)
    for ann in pan["annotations"]:
        name = ann["image_id"]
        ids = read_panoptic_png(out / "panoptic" / f"{name}.png")
        assert ids.shape == sizes[name]
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in ann["segments_info"]}
        for s in ann["segments_info"]:
            assert s["area"] == int((ids == s["id"]).sum()) and s["category_id"] in (1, 2, 3)
        sem = read_label_map(out / "semantic" / f"{name}.png")
        assert sem.shape == sizes[name] and sem.max() < 3
        assert Image.open(out / "overlay" / f"{name}.png").size[1] >= 384  # enlarged to stay legible
    # the JSON and PNGs are COCO panoptic as panopticapi reads them: scored against themselves, PQ = 1
    res = evaluate_panoptic_files(out / "panoptic.json", out / "panoptic.json", out / "panoptic", out / "panoptic",
                                  show_progress=False)
    if res["All"]["n"]:
        assert res["All"]["pq"] == pytest.approx(1.0)
    record = json.loads((out / "predict.json").read_text())
    assert record["num_images"] == 4 and record["settings"]["test_size"] == [64, 107]
    assert record["categories"][1]["synonyms"] == ["blue thing", "bluish thing"]
    # text embeddings were cached for the vocabulary
    assert any((trained / "text_cache").iterdir())
    # the semantic task writes no panoptic outputs
    out2 = tmp_path / "out2"
    assert _predict(trained, ims / "wide.jpg", "--vocab", "a; b", "--task", "semantic", "--out", out2) == 0
    assert (out2 / "semantic" / "wide.png").is_file() and (out2 / "overlay" / "wide.png").is_file()
    assert not (out2 / "panoptic").exists() and not (out2 / "panoptic.json").exists()


def test_predict_on_a_benchmark_scores_as_evaluation(trained, mini_root, tmp_path, monkeypatch):
    """predict --dataset ade150 on the benchmark's images, scored from its files, gives the PQ / mIoU that
    evaluation computes in memory with the same model, generator and thresholds."""
    from smart.data.registry import Dataset
    from smart.data.sources import generator_proposals
    from smart.eval.cell import EvalSettings, evaluate_model
    from smart.eval.panoptic import PanopticAccumulator, evaluate_panoptic_files
    from smart.eval.semantic import SemSegAccumulator, evaluate_semantic_files
    from smart.experiment import Experiment
    from smart.io import read_label_map, read_panoptic_png
    from smart.predict import checkpoint_generator
    from smart.train.checkpoint import load_trained

    ds = Dataset.open("ade150", profile="mini", root=mini_root)
    images = [ds.records[i]["file_name"] for i in range(5)]
    out = tmp_path / "out"
    assert _predict(trained, *images, "--dataset", "ade150", "--root", mini_root, "--out", out) == 0

    exp = Experiment.load(trained / "params.yaml")
    model, meta = load_trained(trained / "model.pt")
    torch.manual_seed(1)
    fly = generator_proposals(checkpoint_generator(meta, exp=exp), state={}, device="cpu", source="t",
                              test_time=exp.proposal_config()).for_dataset("ade150")
    ev = exp.eval
    seen = {}  # what evaluation scores, per image: (panoptic ids, {segment id: category id}, semantic labels)
    pan_add, sem_add = PanopticAccumulator.add, SemSegAccumulator.add

    def record_pan(self, image_id, gt_ids, gt_info, pred_ids, pred_info):
        seen[image_id] = [pred_ids, {s["id"]: s["category_id"] for s in pred_info}]
        return pan_add(self, image_id, gt_ids, gt_info, pred_ids, pred_info)

    def record_sem(self, gt, pred, image=None):
        seen[image].append(pred)
        return sem_add(self, gt, pred, image=image)

    monkeypatch.setattr(PanopticAccumulator, "add", record_pan)
    monkeypatch.setattr(SemSegAccumulator, "add", record_sem)
    ref = evaluate_model(model, ds, settings=EvalSettings(**{**ev, "oracle": "none"}), proposals=fly, limit=5)
    pan = json.loads((out / "panoptic.json").read_text())
    assert len(seen) == 5 and sum(len(a["segments_info"]) for a in pan["annotations"]) > 0
    for ann in pan["annotations"]:  # the same segments, classes and labels, pixel for pixel
        image_id = next(r["image_id"] for r in ds.records if os.path.basename(r["file_name"]).startswith(
            ann["image_id"] + "."))
        ids, cats, sem = seen[image_id]
        assert (read_panoptic_png(out / "panoptic" / ann["file_name"]) == ids).all()
        assert {s["id"]: s["category_id"] for s in ann["segments_info"]} == cats
        assert (read_label_map(out / "semantic" / ann["file_name"]) == sem).all()

    # ground truth of the same five images, by the predicted file names
    gt = json.loads((mini_root / ds.spec.panoptic_json).read_text())
    keep = {os.path.splitext(os.path.basename(p))[0] for p in images}
    gt["annotations"] = [a for a in gt["annotations"] if os.path.splitext(a["file_name"])[0] in keep]
    gt["images"] = [im for im in gt["images"] if os.path.splitext(im["file_name"])[0] in keep]
    for a in gt["annotations"]:
        a["image_id"] = os.path.splitext(a["file_name"])[0]
    for im in gt["images"]:
        im["id"] = os.path.splitext(im["file_name"])[0]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    res = evaluate_panoptic_files(tmp_path / "gt.json", out / "panoptic.json", mini_root / ds.spec.panoptic_dir,
                                  out / "panoptic", show_progress=False)
    for k in ("All", "Things", "Stuff"):
        assert res[k]["pq"] == pytest.approx(ref["panoptic"][k]["pq"], abs=1e-12), k
        assert res[k]["n"] == ref["panoptic"][k]["n"], k
    gt_sem = tmp_path / "gt_sem"
    gt_sem.mkdir()
    for name in keep:
        (gt_sem / f"{name}.png").write_bytes((mini_root / ds.spec.semseg_dir / f"{name}.png").read_bytes())
    sem = evaluate_semantic_files(gt_sem, out / "semantic", len(ds.vocab), ds.ignore_label, show_progress=False)
    assert sem["mIoU"] == pytest.approx(ref["semantic"]["mIoU"], abs=1e-9)
    assert pan["categories"][0]["id"] == ds.vocab[0].id  # the benchmark's own category ids


def _write_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.mark.parametrize("case", ["truncated", "empty_vocab", "duplicate", "missing_ckpt", "not_a_model",
                                  "truncated_ckpt", "wrong_cell", "bad_threshold"])
def test_bad_input_is_one_message_and_nothing_written(trained, tmp_path, capsys, case):
    from smart.cli import main as cli

    ims = tmp_path / "in"
    _write_png(ims / "ok.png", np.full((20, 20, 3), 128, np.uint8))
    args = [ims, "--vocab", "cat; dog"]
    ckpt = trained / "model.pt"
    if case == "truncated":
        _write_png(ims / "z.png", np.full((64, 64, 3), 7, np.uint8))
        data = (ims / "z.png").read_bytes()
        (ims / "z.png").write_bytes(data[: len(data) // 2])
    elif case == "empty_vocab":
        args = [ims, "--vocab", " ; "]
    elif case == "duplicate":
        args = [ims, "--vocab", "cat; dog; cat"]
    elif case == "missing_ckpt":
        ckpt = tmp_path / "none.pt"
    elif case == "not_a_model":
        ckpt = tmp_path / "x.pt"
        torch.save({"hello": 1}, ckpt)
    elif case == "truncated_ckpt":
        ckpt = tmp_path / "cut.pt"
        data = (trained / "model.pt").read_bytes()
        ckpt.write_bytes(data[: len(data) // 3])
    elif case == "bad_threshold":
        args += ["--overlap-threshold", "1.5"]
    out = tmp_path / "out"
    if case == "wrong_cell":  # a cell's checkpoint path holding another cell's model
        proj = tmp_path / "proj"
        (proj / "results/train/table3a_all/s0").mkdir(parents=True)
        (proj / "results/train/table3a_all/s0/model.pt").write_bytes((trained / "model.pt").read_bytes())
        cwd = os.getcwd()
        os.chdir(proj)
        try:
            rc = cli(["predict", str(ims), "--vocab", "cat", "--params", str(trained / "params.yaml"), "--cell",
                      "table3a_all", "--out", str(out), "--threads", "1", "--text-cache", "none"])
        finally:
            os.chdir(cwd)
    else:
        rc = cli(["predict", *map(str, args), "--params", str(trained / "params.yaml"), "--checkpoint", str(ckpt),
                  "--out", str(out), "--threads", "1", "--text-cache", "none"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("error:") == 1 and "Traceback" not in err
    expect = {"truncated": "z.png", "empty_vocab": "empty", "duplicate": "'cat' appears", "missing_ckpt": "none.pt",
              "not_a_model": "not a SMART", "truncated_ckpt": "cannot read", "wrong_cell": "trained for cell 'smart'",
              "bad_threshold": "--overlap-threshold"}[case]
    assert expect in err
    assert not out.exists()


def test_qualitative_figures(trained, mini_root, tmp_path, monkeypatch):
    """`python -m smart qualitative`: one grid per benchmark (input / ground truth / baseline / SMART)."""
    import torch

    from smart.cli import main as cli

    params = yaml.safe_load((trained / "params.yaml").read_text())
    data = torch.load(trained / "model.pt", weights_only=True)
    for cell in ("frozen", "smart_swinb"):  # each cell's checkpoint path holds a model trained for it
        (tmp_path / f"results/train/{cell}/s0").mkdir(parents=True)
        torch.save({**data, "cell": cell}, tmp_path / f"results/train/{cell}/s0/model.pt")
    params["report"]["qualitative"] = {"baseline": "frozen", "smart": "smart_swinb", "images": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert cli(["qualitative", "--root", str(mini_root), "--out-dir", "figs", "--datasets", "ade150", "pc59",
                "--threads", "1"]) == 0
    for name in ("ade150", "pc59"):
        pic = Image.open(tmp_path / "figs" / f"{name}.png")
        assert pic.width > 4 * 384 and pic.height > 2 * 384  # 4 columns, 2 rows of enlarged 64 px images
