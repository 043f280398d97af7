# Shared helpers: the path map and the checks of params.yaml that every rule relies on.
import os
import re
from pathlib import Path

import smart.paths as P
from smart.config import cell_spec, check_report, section
from smart.data.prepare import REQUIRES as PREPARE_REQUIRES

PROFILE = P.profile(config)
if PROFILE not in ("mini", "paper"):
    raise ValueError(f"params.yaml [profile]: expected 'mini' or 'paper', got {PROFILE!r}")
ROOT = P.data_root(config)
if PROFILE == "mini":
    MINI_WORLD = section(config, "mini_world", source="params.yaml")
for _c in P.cells(config):  # every cell resolves (an invalid one stops here, naming its key)
    cell_spec(config, _c, source="params.yaml")
check_report(config, source="params.yaml")
# Every job encodes a vocabulary once for the whole DAG (an exact cache; see smart.model.text).
os.environ.setdefault("SMART_TEXT_CACHE", P.TEXT_CACHE)

# Snakemake's code trigger sees only rule bodies, not the smart package: the world generator's
# sources are declared as inputs so that a change to them regenerates the world.
import smart

_PKG = Path(smart.__file__).parent
MINI_WORLD_CODE = sorted(str(p) for p in (_PKG / "data/mini").glob("*.py")) + [str(_PKG / "data/categories.py")]


wildcard_constraints:
    dataset="|".join(re.escape(d) for d in P.ALL_DATASETS),
    unit="[a-z0-9_+]+",
    cell="|".join(re.escape(c) for c in P.cells(config)),
    seed="[0-9]+",
    generator="[A-Za-z0-9_.-]+",
