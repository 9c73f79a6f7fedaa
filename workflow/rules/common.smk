# Configuration and sample-sheet validation, wildcard constraints, fan-out lists, input functions.
# Nothing numerical here: sizes come from holocat.pipeline.plan.
import hashlib
import json
import shlex
from pathlib import Path

from holocat.pipeline.config import read_samples, validate_config
from holocat.pipeline.plan import code_digest, sample_plan

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"
_validated = validate_config(config, SCHEMAS / "config.schema.yaml")
config.clear()
config.update(_validated)
SAMPLES = {
    s.sample: s
    for s in read_samples(config["samples"], SCHEMAS / "samples.schema.yaml")
}
PLANS = {name: sample_plan(config, s.source) for name, s in SAMPLES.items()}
SYNTHETIC = [name for name, s in SAMPLES.items() if s.synthetic]
ENVS = str(Path(workflow.basedir) / "envs")
RES = config["resources"]


wildcard_constraints:
    sample="|".join(SAMPLES) or "NO_SAMPLES",
    chunk=r"\d+",
    slab=r"\d+",


def as_json(obj):
    """Parameters handed to the holocat CLI, as one shell-quoted JSON word."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def sample_of(wildcards):
    return SAMPLES[wildcards.sample]


def raw_scan(wildcards):
    s = SAMPLES[wildcards.sample]
    if s.synthetic:
        return f"results/{s.sample}/raw.zarr.manifest.json"
    return []


def raw_scan_path(wildcards):
    s = SAMPLES[wildcards.sample]
    return f"results/{s.sample}/raw.zarr" if s.synthetic else s.source


def angle_chunk_parts(wildcards):
    n = PLANS[wildcards.sample].n_angle_chunks
    return [
        f"results/{wildcards.sample}/phase.ome.zarr.parts/{i}.json" for i in range(n)
    ]


def slab_parts(kind):
    def parts(wildcards):
        n = PLANS[wildcards.sample].n_slabs
        return {
            "reconstruct": [
                f"results/{wildcards.sample}/volume.ome.zarr.parts/{i}.json"
                for i in range(n)
            ],
            "segment": [
                f"results/{wildcards.sample}/segment.slabs.zarr.parts/{i}.json"
                for i in range(n)
            ],
            "attributes": [
                f"results/{wildcards.sample}/attributes.parts/{i}.parquet"
                for i in range(n)
            ],
        }[kind]

    return parts


def per_sample_outputs(name):
    out = [
        f"results/{name}/phase.ome.zarr.manifest.json",
        f"results/{name}/volume.ome.zarr.manifest.json",
        f"results/{name}/labels.ome.zarr.manifest.json",
        f"results/{name}/attributes.parquet",
        f"results/{name}/analysis/importance.csv",
    ]
    if SAMPLES[name].synthetic:
        out += [
            f"results/{name}/raw.zarr.manifest.json",
            f"results/{name}/validation.json",
        ]
    return out


def final_outputs():
    out = [f for name in SAMPLES for f in per_sample_outputs(name)]
    out += ["results/fem/single_particle.parquet", "results/report/summary.html"]
    if len(SAMPLES) >= 2:
        out.append("results/comparison/comparison.csv")
    return out


# ---- stage 5 (segment.smk): the model a segment job runs with

TRAINED_MODEL = "results/model/holocat-star2d"


def segment_model(wildcards):
    """The trained model folder when the config asks for training, else nothing."""
    star = config["segment"]["method"] == "star"
    return [TRAINED_MODEL] if star and config["segment"]["train"]["enabled"] else []


def model_option(wildcards, input):
    return f"--model {input.model}" if input.model else ""


def segment_params(wildcards):
    """segment's own keys (not the training recipe, which only the model folder depends on)."""
    return as_json({k: v for k, v in config["segment"].items() if k != "train"})


def model_digest(wildcards):
    """Checksum of the weights segment runs with when they are not a workflow output (rerun trigger)."""
    seg = config["segment"]
    if seg["method"] != "star" or seg["train"]["enabled"]:
        return ""
    from holocat._resources import resource_path

    folder = (
        resource_path("models/holocat-star2d", must_exist=False)
        if seg["model"] == "default"
        else Path(seg["model"])
    )
    weights = folder / "weights.pt"
    return (
        hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        if weights.exists()
        else "missing"
    )
