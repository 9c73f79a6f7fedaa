"""The configuration schema: defaults, unknown keys and wrong types named, sample sheet checks."""

from __future__ import annotations

import pytest
import yaml
from wf_helpers import ROOT, run_snakemake

from holocat.pipeline.config import ConfigError, load_config, read_samples, validate_config

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def test_demo_config_is_valid_and_defaults_filled():
    cfg = load_config(ROOT / "config" / "config.yaml", SCHEMA)
    assert cfg["reconstruct"]["filter"] == "ramp"
    assert cfg["segment"]["prob_threshold"] == 0.5
    assert cfg["segment"]["nms_threshold"] == 0.4
    assert cfg["phase"]["method"] in ("ctf", "paganin")
    assert cfg["fem"]["c_rate"] == 5.0
    assert set(cfg) >= {
        "simulate",
        "ingest",
        "phase",
        "reconstruct",
        "segment",
        "attributes",
        "analysis",
        "fem",
        "report",
        "slab_rows",
        "resources",
    }


def test_minimal_config_gets_every_default():
    cfg = validate_config({"samples": "x.tsv"}, SCHEMA)
    assert cfg["slab_rows"] == 48 and cfg["angle_chunk"] == 60
    assert cfg["segment"]["watershed"]["min_distance_vox"] == 5
    assert cfg["attributes"]["pdensity_cube_um"] == 100.0


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"reconstruct": {"filtr": "ramp"}}, r"unknown key 'reconstruct\.filtr'"),
        ({"bogus": 1}, r"unknown key 'bogus'"),
        ({"slab_rows": "many"}, r"'slab_rows'.*not of type 'integer'"),
        ({"phase": {"method": "tie"}}, r"'phase\.method'.*'tie' is not one of"),
        ({"simulate": {"voxel_size_um": -1}}, r"'simulate\.voxel_size_um'"),
        (
            {"reconstruct": {"center": "left"}},
            r"'reconstruct\.center': expected 'auto' or a number",
        ),
        ({"segment": {"watershed": {"h_max_vox": "x"}}}, r"'segment\.watershed\.h_max_vox'"),
        ({"simulate": {"shape": [64, 64]}}, r"'simulate\.shape'"),
    ],
)
def test_bad_config_names_the_key(bad, match):
    with pytest.raises(ConfigError, match=match):
        validate_config({"samples": "x.tsv", **bad}, SCHEMA)


def test_sample_sheet_errors(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample\tcycles\tsource\na\tten\tsynthetic\n")
    with pytest.raises(ConfigError, match=r"row 2: column 'cycles' must be an integer"):
        read_samples(sheet)
    sheet.write_text("sample\tcycles\tsource\tcolour\na\t10\tsynthetic\tred\n")
    with pytest.raises(ConfigError, match=r"unknown key 'colour'"):
        read_samples(sheet)
    sheet.write_text("sample\tcycles\tsource\na b\t10\tsynthetic\n")
    with pytest.raises(ConfigError, match=r"'sample'"):
        read_samples(sheet)
    sheet.write_text("sample\tcycles\tsource\na\t10\tsynthetic\na\t50\tsynthetic\n")
    with pytest.raises(ConfigError, match="duplicate sample names"):
        read_samples(sheet)
    sheet.write_text("sample\tcycles\tsource\tseed\na\t10\tsynthetic\t7\n")
    (s,) = read_samples(sheet)
    assert (s.sample, s.cycles, s.synthetic, s.seed) == ("a", 10, True, 7)


def test_snakemake_rejects_bad_config_before_running_anything(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["samples"] = str(ROOT / "config" / "samples.tsv")
    cfg["reconstruct"]["filtr"] = "hann"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "-n", configfile=bad, check=False)
    assert proc.returncode != 0
    assert "reconstruct.filtr" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_scale_2048_config_is_valid():
    cfg = load_config(ROOT / "config" / "scale-2048.yaml", SCHEMA)
    assert cfg["slab_rows"] == 64 and cfg["simulate"]["n_angles"] == 1500
    assert cfg["phase"]["method"] == "ctf"


def test_config_readme_explains_every_key():
    text = (ROOT / "config" / "README.md").read_text()
    schema = yaml.safe_load(SCHEMA.read_text())

    def keys(node, prefix=""):
        for k, sub in node.get("properties", {}).items():
            yield prefix + k, k
            if sub.get("type") == "object":
                yield from keys(sub, prefix + k + ".")

    def explained(full: str) -> bool:
        parts = full.split(".")
        suffixes = [".".join(parts[i:]) for i in range(len(parts))]
        return any(f"`{sfx}`" in text for sfx in suffixes)

    missing = [full for full, _ in keys(schema) if not explained(full)]
    assert not missing, f"config/README.md does not explain: {missing}"
