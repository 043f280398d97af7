"""Category tables with open-vocabulary synonyms.

Two on-disk formats are read and written (both those of FC-CLIP / ODISE, see ``smart/data/vocab/SOURCE.md``):

* the synonym text file ``*_with_prompt_eng.txt``: one ``ID:name1,name2,...`` line per class, where
  lines whose names are ``invalid_class_id`` are placeholders and are skipped;
* the merged JSON ``{dataset_key: [{id, name, synonyms, isthing?, trainId?}, ...]}`` in contiguous
  class order.

A :class:`Category` carries both the dataset's own id (sparse for COCO, 0-based for ADE-150, ...)
and its contiguous index ``train_id`` (0..K-1), which is what semantic label maps and model outputs use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from smart.errors import InputError
from smart.io import load_json

PLACEHOLDER = "invalid_class_id"
VOCAB_JSON = "fcclip_categories_with_synonyms.json"


@dataclass(frozen=True)
class Category:
    id: int  # the dataset's own category id (as in panoptic JSON files)
    name: str  # the dataset's original class name
    synonyms: tuple[str, ...]  # open-vocabulary names; the first is the preferred one
    isthing: bool
    train_id: int  # contiguous index 0..K-1 (semantic label value, model class index)
    color: tuple[int, int, int] | None = None

    def to_dict(self) -> dict:
        d = {"id": self.id, "name": self.name, "synonyms": list(self.synonyms),
             "isthing": int(self.isthing), "trainId": self.train_id}
        if self.color is not None:
            d["color"] = list(self.color)
        return d


@dataclass(frozen=True)
class Vocabulary:
    """An ordered category table (contiguous order = ``train_id`` order)."""

    key: str
    categories: tuple[Category, ...]
    _by_id: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        by_id = {}
        for i, c in enumerate(self.categories):
            if c.train_id != i:
                raise InputError(f"category {c.name!r} has trainId {c.train_id}, expected {i}",
                                 field=f"{self.key}[{i}]")
            if c.id in by_id:
                raise InputError(f"duplicate category id {c.id}", field=f"{self.key}[{i}].id")
            by_id[c.id] = c
        object.__setattr__(self, "_by_id", by_id)

    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self):
        return iter(self.categories)

    def __getitem__(self, train_id: int) -> Category:
        return self.categories[train_id]

    def by_id(self, cat_id: int) -> Category:
        return self._by_id[cat_id]

    def has_id(self, cat_id: int) -> bool:
        return cat_id in self._by_id

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    @property
    def synonyms(self) -> list[list[str]]:
        return [list(c.synonyms) for c in self.categories]

    @property
    def thing_mask(self) -> list[bool]:
        return [c.isthing for c in self.categories]

    def to_json_list(self) -> list[dict]:
        return [c.to_dict() for c in self.categories]


def norm_name(name: str) -> str:
    return " ".join(name.lower().split())


def check_names(classes: list[list[str]], *, source: str | None = None, allow_duplicates: bool = False) -> list[str]:
    """Reject an empty vocabulary, blank names and any name used twice (within or across classes,
    ignoring case and repeated spaces): a duplicate would split one concept's score between classes.

    ``allow_duplicates``: return the repeated names instead of failing (the reference tables have some:
    ADE20K-847 and PASCAL Context 459 across classes, ADE20K-150 within one; the published protocol
    keeps them).
    """
    if not classes:
        raise InputError("the vocabulary is empty: give at least one class", path=source, field="vocabulary")
    seen: dict[str, int] = {}
    dups: list[str] = []
    for i, syns in enumerate(classes):
        if not syns or any(not isinstance(s, str) or not s.strip() for s in syns):
            raise InputError(f"class {i + 1} has a blank name", path=source, field=f"vocabulary[{i}]")
        for s in syns:
            key = norm_name(s)
            if key in seen and allow_duplicates:
                dups.append(s)
                continue
            if key in seen:
                j = seen[key]
                where = ("twice in the same class" if j == i
                         else f"in class {j + 1} ({classes[j][0]!r}) and class {i + 1} ({syns[0]!r})")
                raise InputError(f"the name {s!r} appears {where}: every class name and synonym must be unique",
                                 path=source, field=f"vocabulary[{i}]")
            seen[key] = i
    return dups


def split_synonyms(line_names: str) -> tuple[str, ...]:
    """FC-CLIP's rule: replace ', ' with ',' and split on ','."""
    return tuple(s.strip() for s in line_names.replace(", ", ",").split(",") if s.strip())


def read_synonym_txt(path: str | Path) -> list[tuple[int, tuple[str, ...]]]:
    """Read a ``*_with_prompt_eng.txt`` file into ``[(id, synonyms)]``, skipping placeholders.

    Lines without an ``ID:`` prefix (the Cityscapes file) get their line index as id.
    """
    path = Path(path)
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError("synonym file not found", path=path) from None
    for lineno, raw in enumerate(lines):
        if not raw.strip():
            continue
        head, sep, names = raw.partition(":")
        if sep and head.strip().lstrip("-").isdigit():
            cid = int(head)
        else:
            cid, names = lineno, raw
        syn = split_synonyms(names)
        if not syn:
            raise InputError("empty class name list", path=path, field=f"line {lineno + 1}")
        if syn[0] == PLACEHOLDER:
            continue
        out.append((cid, syn))
    return out


def write_synonym_txt(path: str | Path, vocab: Vocabulary) -> None:
    lines = [f"{c.id}:{','.join(c.synonyms)}" for c in vocab]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def vocabulary_from_json_list(key: str, items: list[dict], *, source: str | Path = "") -> Vocabulary:
    cats = []
    for i, it in enumerate(items):
        # The contiguous index is the list position (the JSON is in contiguous order by construction);
        # a ``trainId`` field, where present (ADE-847, Cityscapes), must agree with it.
        try:
            if "trainId" in it and int(it["trainId"]) != i:
                raise ValueError(f"trainId {it['trainId']} is not the list position {i}")
            cats.append(Category(
                id=int(it["id"]), name=str(it["name"]),
                synonyms=tuple(it.get("synonyms") or [it["name"]]),
                isthing=bool(it.get("isthing", 0)), train_id=i,
                color=tuple(it["color"]) if it.get("color") is not None else None,
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed category entry ({exc})", path=source or None,
                             field=f"{key}[{i}]") from None
    return Vocabulary(key, tuple(cats))


def load_vocab_json(path: str | Path, key: str) -> Vocabulary:
    path = Path(path)
    data = load_json(path, "category file")
    if key not in data:
        raise InputError(f"no vocabulary {key!r}; have {sorted(data)}", path=path, field=key)
    return vocabulary_from_json_list(key, data[key], source=path)


def builtin_vocab(key: str) -> Vocabulary:
    """A vocabulary of the real benchmarks, from the packaged FC-CLIP tables.

    Keys: coco_panoptic, ade20k_150, ade20k_847, cityscapes, mapillary_vistas, pascal_ctx_59,
    pascal_ctx_459, pascal_voc_21, coco_stuff_171.
    """
    ref = resources.files("smart.data.vocab").joinpath(VOCAB_JSON)
    with resources.as_file(ref) as p:
        return load_vocab_json(p, key)


def write_vocab_json(path: str | Path, vocabs: dict[str, Vocabulary]) -> None:
    data = {k: v.to_json_list() for k, v in vocabs.items()}
    Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
