"""Training: the mini profile's pretraining stages and the SMART trainer.

Three trainers — :mod:`smart.train.loop` (SMART), :mod:`smart.train.generator_pretrain` (the mini
Mask2Formers) and :mod:`smart.train.clip_pretrain` (the mini CLIP) — share one skeleton:

* **schedule** — :class:`smart.train.optim.LRSchedule` (``ramp`` warmup for SMART as detectron2,
  ``linear`` warmup for the pretraining stages), driven through ``torch.optim.lr_scheduler.LambdaLR``;
* **optimizer groups** — AdamW, with one rule for what takes no weight decay
  (:func:`smart.train.optim.no_decay`; :func:`~smart.train.optim.decay_groups` for the pretraining stages,
  ``SmartModel.param_groups`` / :func:`~smart.train.optim.generator_param_groups` add SMART's lr multipliers);
* **checkpoint / resume** — scratch ``last.pt`` written with :func:`smart.train.checkpoint.atomic_save` and
  read back only when it belongs to the same run (SMART: a fingerprint; generators: an identity);
* **logs** — JSON-lines training curves whose timings go to the run record
  (:func:`smart.provenance.write_jsonl_result`), so that the curves themselves are reproducible.
"""
