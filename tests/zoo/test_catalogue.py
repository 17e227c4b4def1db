"""The zoo catalogue: YAML entries, lookups with close matches, listing, the generated README."""

from __future__ import annotations

import json

import pytest

from sap.zoo import (
    ModelZoo,
    UnknownModelError,
    WeightsIntegrityError,
    ZooEntryError,
    load_pretrained,
)
from sap.zoo import catalogue as catalogue_module
from sap.zoo.catalogue import SOURCE_ZOO_DIR, entry_from_export, read_entry
from sap.zoo.catalogue_readme import render_zoo_readme
from sap.zoo.export import file_sha256
from tests.helpers.zoo import (
    catalogue_entry,
    same_output,
    tiny_export,
    write_catalogue_entry,
)

COMMIT = "1" * 40


def test_entry_round_trips_through_yaml(tmp_path):
    entry = read_entry(
        write_catalogue_entry(
            tmp_path, catalogue_entry(metrics={"whole_skeleton_dice": 0.9}, training={"seed": 1})
        )
    )
    assert entry.source == f"hf://sap-org/sap-test-model@{COMMIT}"
    assert entry.metrics == {"whole_skeleton_dice": 0.9}
    again = tmp_path / "again"
    again.mkdir()
    (again / "sap-test-model.yaml").write_text(entry.to_yaml())
    assert read_entry(again / "sap-test-model.yaml") == entry


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "blue"}, "unknown field(s) ['colour']"),
        ({"task": "kidney"}, "task must be 'skeleton' or 'lesion'"),
        ({"sha256": "abc"}, "sha256 must be 64 lowercase hex digits"),
        ({"source": {"hub": "a/b", "revision": "main"}}, "pinned 40-hex commit"),
        ({"source": {"url": "http://x"}}, "source must be"),
        ({"name": "Bad Name"}, "must be lowercase"),
        ({"metrics": {"dice": "high"}}, "metrics must map names to numbers"),
    ],
)
def test_malformed_entries_name_the_file_and_field(tmp_path, changes, message):
    path = write_catalogue_entry(tmp_path, catalogue_entry(**changes), name="sap-test-model")
    with pytest.raises(ZooEntryError) as info:
        read_entry(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_entry_missing_a_field(tmp_path):
    data = catalogue_entry()
    del data["sha256"]
    with pytest.raises(ZooEntryError, match=r"missing field\(s\) \['sha256'\]"):
        read_entry(write_catalogue_entry(tmp_path, data))


def test_entry_file_must_be_named_after_the_model(tmp_path):
    with pytest.raises(ZooEntryError, match="sap-test-model.yaml"):
        read_entry(write_catalogue_entry(tmp_path, catalogue_entry(), name="other"))


def test_unknown_model_names_list_close_matches(tmp_path):
    write_catalogue_entry(tmp_path, catalogue_entry(name="sap-skeleton-phantom"))
    write_catalogue_entry(tmp_path, catalogue_entry(name="sap-lesion-phantom", task="lesion"))
    zoo = ModelZoo.from_directory(tmp_path)
    with pytest.raises(UnknownModelError, match="Did you mean 'sap-skeleton-phantom'") as info:
        zoo.get("sap-skeleton-phantm")
    assert "hf://owner/repo@revision" in str(info.value)
    assert [c.name for c in zoo.list("*phantom")] == ["sap-lesion-phantom", "sap-skeleton-phantom"]
    assert [c.name for c in zoo.list(task="lesion")] == ["sap-lesion-phantom"]
    assert zoo.list("nothing*") == []


def test_load_pretrained_unknown_name_lists_the_zoo(monkeypatch, tmp_path):
    write_catalogue_entry(tmp_path, catalogue_entry(name="sap-skeleton-phantom"))
    monkeypatch.setenv("SAP_MODEL_ZOO", str(tmp_path))
    monkeypatch.setattr(catalogue_module, "BUNDLED_DIR", tmp_path / "no-bundles")
    with pytest.raises(UnknownModelError, match="Did you mean 'sap-skeleton-phantom'"):
        load_pretrained("sap-skeletn-phantom")


@pytest.fixture
def bundled_zoo(tmp_path, monkeypatch):
    """A zoo whose bundled folder holds one tiny export and whose entry directory is empty."""
    bundled = tmp_path / "zoo_bundled"
    entries = tmp_path / "entries"
    entries.mkdir()
    model, _ = tiny_export(bundled / "sap-tiny-bundled", name="sap-tiny-bundled")
    monkeypatch.setattr(catalogue_module, "BUNDLED_DIR", bundled)
    monkeypatch.setenv("SAP_MODEL_ZOO", str(entries))
    return model, bundled, entries


def test_bundled_export_without_entry_is_listed_from_its_config(bundled_zoo):
    model, bundled, _ = bundled_zoo
    from sap import zoo as zoo_api

    (entry,) = zoo_api.list_models()
    assert entry.name == "sap-tiny-bundled" and entry.source == "bundled" and entry.synthetic
    assert entry.sha256 == file_sha256(bundled / "sap-tiny-bundled" / "model.safetensors")
    assert "size='0.0" in repr(entry) and "task='skeleton'" in repr(entry)
    loaded = load_pretrained("sap-tiny-bundled")
    assert same_output(loaded, model) and loaded.pretrained_cfg["source"] == "zoo:sap-tiny-bundled"


def test_entry_sha256_is_checked_against_the_bundled_weights(bundled_zoo):
    _, bundled, entries = bundled_zoo
    entry = entry_from_export(bundled / "sap-tiny-bundled", summary="tiny")
    (entries / "sap-tiny-bundled.yaml").write_text(entry.to_yaml().replace(entry.sha256, "f" * 64))
    with pytest.raises(
        WeightsIntegrityError, match="the zoo catalogue entry / caller expects ffff"
    ):
        load_pretrained("sap-tiny-bundled")


def test_entry_for_missing_bundled_weights_says_how_to_make_them(bundled_zoo):
    _, _, entries = bundled_zoo
    write_catalogue_entry(
        entries, catalogue_entry(name="sap-not-trained", source={"bundled": "sap-not-trained"})
    )
    with pytest.raises(FileNotFoundError, match="train_phantom_models.py"):
        load_pretrained("sap-not-trained")


def test_model_zoo_entries_are_valid_and_the_readme_is_in_sync():
    zoo = ModelZoo.from_directory(SOURCE_ZOO_DIR)
    readme = (SOURCE_ZOO_DIR / "README.md").read_text(encoding="utf-8")
    assert readme == render_zoo_readme(zoo), (
        "model_zoo/README.md is out of date: run `sap zoo list --write-readme model_zoo/README.md`"
    )
    for entry in zoo:
        assert entry.license and entry.summary
        if entry.synthetic:
            assert "synthetic" in entry.summary or "phantom" in entry.summary


def test_readme_table_lists_every_entry(tmp_path):
    write_catalogue_entry(
        tmp_path,
        catalogue_entry(
            name="sap-b", metrics={"whole_skeleton_dice": 0.912345}, size_bytes=2_500_000
        ),
    )
    write_catalogue_entry(
        tmp_path,
        catalogue_entry(
            name="sap-a",
            source={"bundled": "sap-a"},
            synthetic=True,
            training={"command": "make it", "runtime": "3 min"},
        ),
    )
    text = render_zoo_readme(ModelZoo.from_directory(tmp_path))
    assert text.index("`sap-a`") < text.index("`sap-b`")
    assert "whole_skeleton_dice 0.912" in text and "| 2.50 |" in text
    assert "[sap-org/sap-test-model](https://huggingface.co/sap-org/sap-test-model)" in text
    assert "Made by `make it` (3 min)." in text
    assert (
        "the code\nthat the test suite runs against a local Hub look-alike is the code that talks to\nhuggingface.co"
        in text
    )


def test_cli_list_json_and_readme(bundled_zoo, tmp_path, capsys):
    from sap.cli import main

    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "task", "backbone", "size", "source"]
    assert "sap-tiny-bundled" in out and "bundled" in out
    assert main(["zoo", "list", "--json", "--task", "lesion"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["zoo", "list", "--write-readme", str(tmp_path / "README.md")]) == 0
    assert (tmp_path / "README.md").read_text(encoding="utf-8").startswith("# The sap model zoo")
