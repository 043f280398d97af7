import json

import pytest

from smart.data.categories import (
    builtin_vocab,
    load_vocab_json,
    read_synonym_txt,
    split_synonyms,
    write_synonym_txt,
    write_vocab_json,
)
from smart.errors import InputError


@pytest.mark.parametrize("key,n,things", [
    ("coco_panoptic", 133, 80), ("ade20k_150", 150, 100), ("ade20k_847", 847, None),
    ("mapillary_vistas", 65, 37), ("pascal_ctx_59", 59, None), ("pascal_ctx_459", 459, None),
])
def test_builtin_vocab_sizes(key, n, things):
    v = builtin_vocab(key)
    assert len(v) == n
    assert [c.train_id for c in v] == list(range(n))
    if things is not None:
        assert sum(v.thing_mask) == things


def test_builtin_ids_follow_dataset_conventions():
    coco = builtin_vocab("coco_panoptic")
    assert coco[0].name == "person" and coco[0].id == 1
    assert coco.by_id(200).train_id == 132  # sparse ids up to 200
    ade = builtin_vocab("ade20k_150")
    assert ade[0].id == 0 and ade[0].name == "wall" and not ade[0].isthing
    a847 = builtin_vocab("ade20k_847")
    assert a847[0].id == 2978  # full-ADE object id, train id 0


def test_split_synonyms_follows_fcclip_rule():
    assert split_synonyms("wall, walls,brick wall") == ("wall", "walls", "brick wall")


def test_synonym_txt_skips_placeholders(tmp_path):
    p = tmp_path / "x_with_prompt_eng.txt"
    p.write_text("0:invalid_class_id\n1:person,child\n2:invalid_class_id\n7:car\n")
    assert read_synonym_txt(p) == [(1, ("person", "child")), (7, ("car",))]


def test_packaged_txt_agrees_with_json():
    from importlib import resources

    with resources.as_file(resources.files("smart.data.vocab") / "ade20k_150_with_prompt_eng.txt") as p:
        lines = read_synonym_txt(p)
    v = builtin_vocab("ade20k_150")
    assert [s for _, s in lines] == [c.synonyms for c in v]


def test_roundtrip_json_and_txt(tmp_path):
    v = builtin_vocab("pascal_ctx_59")
    write_vocab_json(tmp_path / "c.json", {"pascal_ctx_59": v})
    assert load_vocab_json(tmp_path / "c.json", "pascal_ctx_59") == v
    write_synonym_txt(tmp_path / "c.txt", v)
    assert [list(s) for _, s in read_synonym_txt(tmp_path / "c.txt")] == v.synonyms


def test_bad_vocab_json_names_file_and_field(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"k": [{"id": 1, "name": "a"}, {"name": "b"}]}))
    with pytest.raises(InputError) as e:
        load_vocab_json(p, "k")
    assert str(p) in str(e.value) and "k[1]" in str(e.value)
    with pytest.raises(InputError, match="no vocabulary 'zz'"):
        load_vocab_json(p, "zz")
