"""SMART: Semantic Refocused Tuning for Open-Vocabulary Panoptic Segmentation — reproduction pipeline.

The package holds every piece of logic; the Snakemake and DVC workflows only call
``python -m smart <verb>``.
"""

__version__ = "0.1.0"
