from pathlib import Path

import pytest
import yaml

from vinocr.config import load_config, parse_override, write_resolved_config
from vinocr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_base_files_merge_in_order(tmp_path: Path):
    write(tmp_path / "_base_/a.yml", "Global: {seed: 1, run_dir: runs/a}\nTrain: {batch_size: 8}\n")
    write(tmp_path / "_base_/b.yml", "Global: {seed: 2}\n")
    cfg_file = write(tmp_path / "exp.yml",
                     "_base_: [_base_/a.yml, _base_/b.yml]\nTrain: {num_workers: 0}\n")
    cfg = load_config(cfg_file)
    assert cfg["Global"]["seed"] == 2          # b overrides a
    assert cfg["Global"]["run_dir"] == "runs/a"  # kept from a
    assert cfg["Train"]["batch_size"] == 8 and cfg["Train"]["num_workers"] == 0
    assert cfg["Eval"]["batch_size"] == 64     # schema default filled in


def test_overrides_parse_yaml_values(tmp_path: Path):
    cfg_file = write(tmp_path / "exp.yml", "Global: {seed: 1}\n")
    cfg = load_config(cfg_file, ["Train.batch_size=64", "Global.image_shape=[3,48,640]",
                                 "Train.shuffle=false", "Global.charset=plate"])
    assert cfg["Train"]["batch_size"] == 64 and cfg["Train"]["shuffle"] is False
    assert cfg["Global"]["image_shape"] == [3, 48, 640] and cfg["Global"]["charset"] == "plate"
    assert parse_override("Optimizer.lr=5e-4") == (["Optimizer", "lr"], 5e-4)


def test_unknown_key_names_key_file_and_valid_keys(tmp_path: Path):
    cfg_file = write(tmp_path / "exp.yml", "Train:\n  bach_size: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file)
    message = str(err.value)
    assert "Train.bach_size" in message and "exp.yml" in message and "batch_size" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match=r"Global\.sed.*-o Global\.sed=1.*seed"):
        load_config(None, ["Global.sed=1"])
    with pytest.raises(ConfigError, match="unknown key 'Model'"):
        load_config(None, ["Model.x=1"])


def test_unknown_key_in_base_names_the_base_file(tmp_path: Path):
    write(tmp_path / "base.yml", "Eval: {shufle: true}\n")
    cfg_file = write(tmp_path / "exp.yml", "_base_: base.yml\n")
    with pytest.raises(ConfigError, match=r"Eval\.shufle.*base\.yml"):
        load_config(cfg_file)


def test_wrong_type_names_expected_type(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"Train\.batch_size.*expected int, got str"):
        load_config(None, ["Train.batch_size=lots"])
    with pytest.raises(ConfigError, match=r"Global\.use_amp.*expected bool"):
        load_config(None, ["Global.use_amp=3"])
    with pytest.raises(ConfigError, match=r"Global\.image_shape"):
        load_config(None, ["Global.image_shape=[3,48]"])
    with pytest.raises(ConfigError, match=r"Global\.device.*not one of"):
        load_config(None, ["Global.device=tpu"])


def test_dataset_and_augment_sections_are_checked(tmp_path: Path):
    cfg_file = write(tmp_path / "exp.yml",
                     "Train:\n  dataset:\n    sources:\n"
                     "      - {type: label_file, label_file: [x.txt]}\n")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.label_file.*label_files"):
        load_config(cfg_file)
    with pytest.raises(ConfigError, match=r"unknown dataset type 'lmbd'"):
        load_config(None, ["Train.dataset={type: lmbd, path: x}"])
    with pytest.raises(ConfigError, match=r"Train\.augment"):
        load_config(None, ["Train.augment={preset: vin, transforms: [{name: rotat}]}"])


def test_yaml_errors_name_file_and_line(tmp_path: Path):
    bad = write(tmp_path / "bad.yml", "Global:\n  seed: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yml:\d+: invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yml")
    write(tmp_path / "a.yml", "_base_: b.yml\n")
    write(tmp_path / "b.yml", "_base_: a.yml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yml")


def test_resolved_config_round_trip(tmp_path: Path):
    cfg = load_config(REPO / "configs/vin/ppocrv4_mobile.yml", ["Train.batch_size=7"])
    out = write_resolved_config(cfg, tmp_path / "run")
    assert out.name == "config.yml" and not list((tmp_path / "run").glob("*.tmp"))
    reloaded = load_config(out)
    assert reloaded == cfg and reloaded["Train"]["batch_size"] == 7
    assert yaml.safe_load(out.read_text())["Global"]["charset"] == "vin"


@pytest.mark.parametrize("name", sorted(p.relative_to(REPO / "configs").as_posix()
                                        for p in (REPO / "configs").rglob("*.yml")
                                        if "_base_" not in p.parts))
def test_shipped_configs_validate(name):
    from vinocr.sr.config import SR_SCHEMA

    # configs/sr/ holds super-resolution runs (vinocr-train-sr), which have their own schema.
    load_config(REPO / "configs" / name, schema=SR_SCHEMA if name.startswith("sr/") else None)


def test_dataset_value_types_and_ranges_checked_at_config_time():
    with pytest.raises(ConfigError, match=r"Train\.dataset\.path: expected a path, got int"):
        load_config(None, ["Train.dataset={type: lmdb, path: 5}"])
    with pytest.raises(ConfigError, match=r"layouts: expected a list of strings or null"):
        load_config(None, ["Train.dataset={type: lrlpr, path: x, layouts: Mercosur}"])
    with pytest.raises(ConfigError, match=r"ratio: expected a finite number >= 0"):
        load_config(None, ["Train.dataset={sources: [{type: lmdb, path: a, ratio: -1}]}"])
    with pytest.raises(ConfigError, match=r"batch_size.*must be >= 1"):
        load_config(None, ["Train.batch_size=0"])
    with pytest.raises(ConfigError, match=r"Global\.charset: 'nope\.txt' is neither"):
        load_config(None, ["Global.charset=nope.txt"])


def test_duplicate_yaml_keys_and_override_origin(tmp_path: Path):
    dup = write(tmp_path / "dup.yml", "Global:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ConfigError, match=r"dup\.yml:3: .*duplicate key 'seed'"):
        load_config(dup)
    base = write(tmp_path / "b.yml", "Train:\n  dataset: {type: lmdb, path: x}\n")
    with pytest.raises(ConfigError, match=r"set in -o Train\.dataset\.type=nope"):
        load_config(base, ["Train.dataset.type=nope"])
    with pytest.raises(ConfigError, match=r"unknown key '1'.*ints\.yml"):
        load_config(write(tmp_path / "ints.yml", "1: {a: 1}\n"))
