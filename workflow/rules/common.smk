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
