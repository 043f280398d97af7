"""The pieces fit: mini world → mask generator → SMART model → loss/backward → inference → PQ/mIoU."""

import numpy as np
import torch

from smart.data.registry import Dataset
from smart.eval.panoptic import PanopticAccumulator
from smart.eval.semantic import SemSegAccumulator
from smart.model.config import get_preset
from smart.model.criterion import CriterionConfig, build_criterion, targets_from_panoptic
from smart.model.inference import InferenceConfig, panoptic_for_eval, postprocess, semantic_for_eval
from smart.model.mask_generator import build_mask_generator
from smart.model.smart import build_model


def test_one_training_step_and_evaluation_on_the_mini_world(mini_root):
    torch.manual_seed(0)
    ds = Dataset.open("coco_train", root=mini_root)
    samples = [ds[i] for i in range(2)]
    images = torch.stack([torch.from_numpy(np.array(s["image"])).permute(2, 0, 1) for s in samples])  # (2, 3, 64, 64) 0-255

    generator = build_mask_generator({"name": "tiny", "resize": False, "top_k": 8})
    assert not any(p.requires_grad for p in generator.parameters())
    props = generator.predict(images.float())  # frozen, no grad
    assert props["mask_logits"].shape[:2] == (2, 8)

    model = build_model(get_preset("tiny-test"))
    vocab = ds.vocab
    out = model(images.float(), props["mask_logits"], vocab)
    K = len(vocab)
    assert out["pred_logits"].shape == (2, 8, K + 1)
    assert out["pred_masks"].shape == props["mask_logits"].shape

    targets = [targets_from_panoptic(s["pan_ids"], s["segments_info"]) for s in samples]
    # masks of the targets at the proposal resolution, as the trainer does
    h, w = out["pred_masks"].shape[-2:]
    for t in targets:
        t["masks"] = torch.nn.functional.interpolate(t["masks"][None].float(), size=(h, w), mode="nearest")[0] > 0.5
    criterion = build_criterion(CriterionConfig(num_points=256), num_classes=K)
    losses = criterion(out, targets, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(losses["loss"])
    opt = torch.optim.AdamW(model.param_groups(lr=1e-3, weight_decay=0.05))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses["loss"].backward()
    opt.step()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any("q_proj" in n for n in changed)

    with torch.no_grad():
        out = model(images.float(), props["mask_logits"], vocab)
    results = postprocess(out, is_thing=vocab.thing_mask, output_sizes=[(64, 64)] * 2,
                          cfg=InferenceConfig(object_mask_threshold=0.0))
    pq = PanopticAccumulator([{"id": c.id, "isthing": int(c.isthing), "name": c.name} for c in vocab])
    miou = SemSegAccumulator(K, ds.ignore_label)
    for s, r in zip(samples, results):
        seg, segs = r["panoptic_seg"]
        pred_ids, pred_info = panoptic_for_eval(seg, segs, dataset_ids=[c.id for c in vocab], is_thing=vocab.thing_mask)
        gt_info = [{"id": x["id"], "category_id": x["category_id"], "iscrowd": x["iscrowd"], "area": int((s["pan_ids"] == x["id"]).sum())}
                   for x in s["segments_info"]]
        pq.add(s["image_id"], s["pan_ids"], gt_info, pred_ids, pred_info)
        miou.add(s["sem_seg"], semantic_for_eval(r["sem_label"]))
    res_pq, res_sem = pq.summary(), miou.summary()
    assert 0.0 <= res_pq["All"]["pq"] <= 1.0
    assert 0.0 <= res_sem["mIoU"] <= 100.0
    assert np.isfinite(res_sem["pACC"])
