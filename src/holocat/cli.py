"""``holocat`` command line: one subcommand per workflow stage.

Each stage subcommand reads its inputs with :mod:`holocat.io`, calls the library and writes its
outputs atomically; the Snakemake rules in ``workflow/rules`` are thin wrappers around these.
``--params`` takes a JSON object (or ``@file.json``) that overrides the stage's configuration
section; keys not given take the defaults of ``workflow/schemas/config.schema.yaml``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from holocat import __version__

log = logging.getLogger("holocat")

STAGES = (
    "simulate",
    "ingest",
    "phase",
    "reconstruct",
    "segment",
    "attributes",
    "analysis",
    "fem",
    "report",
)


def _defaults() -> dict:
    from holocat.pipeline.config import validate_config

    return validate_config({"samples": "-"})


def _params(text: str | None, *sections: str, extra: dict | None = None) -> dict:
    """Schema defaults of ``sections`` (merged, later wins), then ``extra``, then the user's JSON.

    A section naming a top-level scalar key (``slab_rows``, ``angle_chunk``) contributes that key.
    """
    defaults = _defaults()
    out: dict = {}
    for sec in sections:
        val = defaults[sec]
        out.update(val if isinstance(val, dict) else {sec: val})
    out.update(extra or {})
    if text:
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        try:
            given = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--params: not a JSON object ({exc})") from exc
        if not isinstance(given, dict):
            raise ValueError(f"--params: expected a JSON object; got {type(given).__name__}")
        known = set(out) | {
            "sample",
            "cycles",
            "seed",
            "angle_chunk",
            "slab_rows",
            "config",
            "samples",
            "title",
        }
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"--params: unknown key(s) {unknown}; known: {sorted(known)}")
        out.update(given)
    return out


# ---------------------------------------------------------------------------------------------- handlers


def _simulate(a) -> None:
    from holocat.pipeline import simulate

    if a.action == "electrode":
        p = _params(a.params, "simulate", extra={"cycles": 10, "seed": 0})
        keep = (
            "shape",
            "voxel_size_um",
            "energy_keV",
            "mean_diameter_um",
            "diameter_cv",
            "active_fraction",
            "collector_thickness_um",
            "cycles",
            "seed",
        )
        simulate.run_electrode(a.paths[0], {k: p[k] for k in keep})
    else:
        p = _params(a.params, "simulate", "angle_chunk", extra={"seed": 0})
        keep = (
            "energy_keV",
            "n_angles",
            "focus_to_sample_m",
            "focus_to_detector_m",
            "detector_shape",
            "photons_per_pixel",
            "n_flats",
            "n_darks",
            "flat_drift",
            "defective_pixel_fraction",
            "cor_offset_px",
            "seed",
            "angle_chunk",
        )
        simulate.run_scan(a.paths[0], a.paths[1], {k: p[k] for k in keep})


def _ingest(a) -> None:
    from holocat.pipeline.tomo import run_ingest

    run_ingest(a.raw, a.out, _params(a.params, "ingest"))


def _phase(a) -> None:
    from holocat.pipeline import tomo

    p = _params(a.params, "phase", "angle_chunk", "slab_rows")
    if a.action == "init":
        tomo.phase_init(a.paths[0], a.paths[1], p)
    else:
        tomo.phase_chunk(a.paths[0], a.paths[1], a.paths[2], a.chunk, p, a.out)


def _reconstruct(a) -> None:
    from holocat.pipeline import tomo

    p = _params(a.params, "reconstruct", "slab_rows")
    if a.action == "init":
        tomo.reconstruct_init(a.paths[0], a.paths[1], p)
    else:
        tomo.reconstruct_slab(a.paths[0], a.paths[1], a.slab, p, a.out)


def _segment(a) -> None:
    from holocat.pipeline import particles

    p = _params(a.params, "segment", "slab_rows")
    if a.action == "init":
        particles.segment_init(a.paths[0], a.paths[1], p)
    elif a.action == "slab":
        particles.segment_slab(a.paths[0], a.paths[1], a.slab, p, a.out, model_dir=a.model)
    else:
        particles.segment_stitch(a.paths[0], a.paths[1], a.paths[2:], a.index)


def _train(a) -> None:
    from holocat.pipeline.train import train_star_model

    p = _params(a.params, "segment")
    train = dict(p.get("train", {}))
    train["device"] = p.get("device", "auto")
    out = Path(a.out_dir)
    if out.exists() and not a.overwrite:
        raise ValueError(f"out_dir: {out} exists; pass --overwrite to replace it")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    command = shlex.join(["holocat", *a.argv]) if a.record_command else None
    train_star_model(out, train, command=command)


def _attributes(a) -> None:
    from holocat.pipeline import particles

    p = _params(a.params, "attributes", "slab_rows", extra={"sample": "sample", "cycles": 0})
    if a.workers < 1:
        raise ValueError(f"--workers: expected >= 1; got {a.workers}")
    if a.action == "slab":
        particles.attributes_slab(
            a.paths[0], a.paths[1], a.index, a.slab, p, a.out, n_workers=a.workers
        )
    elif a.action == "gather":
        particles.attributes_gather(a.paths[0], a.paths[1], a.paths[2:], p)
    else:
        particles.attributes_truth(a.paths[0], a.paths[1], p, n_workers=a.workers)


def _analysis(a) -> None:
    from holocat.pipeline import science

    p = _params(a.params, "analysis")
    if a.action == "sample":
        science.analysis_sample(a.paths[0], a.paths[1], p)
    else:
        science.analysis_compare(a.paths[0], a.paths[1:], p)


def _fem(a) -> None:
    from holocat.pipeline import science

    science.fem_single_particle(a.out_dir, _params(a.params, "fem"))


def _gather(a) -> None:
    from holocat.pipeline.common import gather_store

    gather_store(a.store, a.parts, stage=a.stage)


def _validate(a) -> None:
    from holocat.pipeline import science

    science.validate_sample(a.sample_dir, a.out)


def _report(a) -> None:
    from holocat.pipeline import science

    p = _params(a.params, "report", extra={"samples": [], "config": {}})
    if not p["samples"]:
        p["samples"] = sorted(
            d.name for d in Path(a.results).iterdir() if (d / "attributes.parquet").exists()
        )
    jobs = None
    if a.logs:
        from holocat.pipeline.jobs import read_job_table

        jobs = read_job_table(a.logs)
    science.report(a.results, a.out_dir, p, jobs=jobs)


def _evaluate(a) -> None:
    import numpy as np

    from holocat.io import open_ome_zarr
    from holocat.segment import evaluate

    gt = np.asarray(open_ome_zarr(a.truth).array[:])
    pred = np.asarray(open_ome_zarr(a.pred).array[:])
    table = evaluate(gt, pred, thresholds=tuple(a.thresholds))
    sys.stdout.write(table.to_string() + "\n")
    if a.out:
        table.to_csv(a.out)


def _config(a) -> None:
    from holocat.pipeline.config import load_config, read_samples

    cfg = load_config(a.config)
    samples = read_samples(cfg["samples"])
    sys.stdout.write(
        f"{a.config}: valid; {len(samples)} sample(s): {', '.join(s.sample for s in samples)}\n"
    )


# ---------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="holocat",
        description="Holotomography of composite battery cathodes: raw scan -> phase -> volume -> "
        "particles -> attributes -> analysis, plus FEM. Stage subcommands: "
        + ", ".join(STAGES)
        + ".",
    )
    parser.add_argument("--version", action="version", version=f"holocat {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks for input errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prm = {"help": "JSON object (or @file.json) overriding the stage's config section"}

    s = sub.add_parser("simulate", help="stage 1: synthetic electrode + holotomography scan")
    s.add_argument("action", choices=["electrode", "scan"])
    s.add_argument("paths", nargs="+", help="electrode: OUT_DIR; scan: TRUTH_DIR OUT_RAW_ZARR")
    s.add_argument("--params", **prm)
    s.set_defaults(func=_simulate, n_paths={"electrode": 1, "scan": 2})

    s = sub.add_parser(
        "ingest", help="stage 2: validate a raw-scan Zarr, derive the geometry (flat-field)"
    )
    s.add_argument("raw")
    s.add_argument("out")
    s.add_argument("--params", **prm)
    s.set_defaults(func=_ingest)

    s = sub.add_parser("phase", help="stage 3: phase retrieval (init | chunk)")
    s.add_argument("action", choices=["init", "chunk"])
    s.add_argument("paths", nargs="+", help="init: INGEST_JSON STORE; chunk: RAW INGEST_JSON STORE")
    s.add_argument("--chunk", type=int, default=0)
    s.add_argument("--out")
    s.add_argument("--params", **prm)
    s.set_defaults(func=_phase, n_paths={"init": 2, "chunk": 3})

    s = sub.add_parser("reconstruct", help="stage 4: FBP reconstruction (init | slab)")
    s.add_argument("action", choices=["init", "slab"])
    s.add_argument("paths", nargs="+", help="PHASE_STORE VOLUME_STORE")
    s.add_argument("--slab", type=int, default=0)
    s.add_argument("--out")
    s.add_argument("--params", **prm)
    s.set_defaults(func=_reconstruct, n_paths={"init": 2, "slab": 2})

    s = sub.add_parser("segment", help="stage 5: particle segmentation (init | slab | stitch)")
    s.add_argument("action", choices=["init", "slab", "stitch"])
    s.add_argument(
        "paths",
        nargs="+",
        help="init/slab: VOLUME_STORE SLABS_STORE; stitch: SLABS_STORE LABELS_STORE PARTS...",
    )
    s.add_argument("--slab", type=int, default=0)
    s.add_argument("--out")
    s.add_argument("--index", help="stitch: output bounding-box index (parquet)")
    s.add_argument(
        "--model",
        help="slab, method star: model folder (default: segment.model, 'default' = shipped model)",
    )
    s.add_argument("--params", **prm)
    s.set_defaults(func=_segment, n_paths={"init": 2, "slab": 2, "stitch": 3})

    s = sub.add_parser(
        "train",
        help="train the star-convex 2D segmentation model (segment.train in the config)",
    )
    s.add_argument(
        "out_dir", help="model folder to write (weights.pt, config.json, thresholds.json)"
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing out_dir")
    s.add_argument(
        "--no-record-command",
        dest="record_command",
        action="store_false",
        help="do not record the command line in config.json",
    )
    s.add_argument("--params", **prm)
    s.set_defaults(func=_train)

    s = sub.add_parser(
        "attributes", help="stage 6: Table S1 particle attributes (slab | gather | truth)"
    )
    s.add_argument("action", choices=["slab", "gather", "truth"])
    s.add_argument(
        "paths",
        nargs="+",
        help="slab: LABELS VOLUME; gather: LABELS OUT.parquet PARTS...; truth: TRUTH_DIR OUT",
    )
    s.add_argument("--slab", type=int, default=0)
    s.add_argument("--index")
    s.add_argument("--out")
    s.add_argument("--workers", type=int, default=1, help="processes over particles (slab, truth)")
    s.add_argument("--params", **prm)
    s.set_defaults(func=_attributes, n_paths={"slab": 2, "gather": 3, "truth": 2})

    s = sub.add_parser(
        "analysis", help="stage 7: correlations, random forest + SHAP (sample | compare)"
    )
    s.add_argument("action", choices=["sample", "compare"])
    s.add_argument(
        "paths", nargs="+", help="sample: ATTRIBUTES OUT_DIR; compare: OUT_DIR TABLES..."
    )
    s.add_argument("--params", **prm)
    s.set_defaults(func=_analysis, n_paths={"sample": 2, "compare": 3})

    s = sub.add_parser("fem", help="stage 8: finite-element simulations")
    s.add_argument("action", choices=["single-particle"])
    s.add_argument("out_dir")
    s.add_argument("--params", **prm)
    s.set_defaults(func=_fem)

    s = sub.add_parser("report", help="stage 9: HTML summary of a results directory")
    s.add_argument("results")
    s.add_argument("out_dir")
    s.add_argument(
        "--logs",
        help="the workflow's log directory: adds the table of jobs (host, SLURM job id, node) "
        "read from the record each holocat command logs first (jobs.csv)",
    )
    s.add_argument("--params", **prm)
    s.set_defaults(func=_report)

    s = sub.add_parser(
        "gather", help="finalise a store written by scattered jobs (phase, reconstruct)"
    )
    s.add_argument("store")
    s.add_argument("parts", nargs="+")
    s.add_argument("--stage", required=True)
    s.set_defaults(func=_gather)

    s = sub.add_parser(
        "validate", help="compare a synthetic sample's results with its ground truth"
    )
    s.add_argument("sample_dir")
    s.add_argument("out")
    s.set_defaults(func=_validate)

    s = sub.add_parser("evaluate", help="instance matching of a label image against ground truth")
    s.add_argument("truth", help="ground-truth labels (OME-Zarr)")
    s.add_argument("pred", help="predicted labels (OME-Zarr)")
    s.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    s.add_argument("--out", help="also write the table as CSV")
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("config", help="validate a workflow configuration and its sample sheet")
    s.add_argument("config", nargs="?", default="config/config.yaml")
    s.set_defaults(func=_config)
    return parser


_VARIADIC = {("segment", "stitch"), ("attributes", "gather"), ("analysis", "compare")}
_NEEDS_OUT = {
    ("phase", "chunk"),
    ("reconstruct", "slab"),
    ("segment", "slab"),
    ("attributes", "slab"),
}
_NEEDS_INDEX = {("segment", "stitch"), ("attributes", "slab")}


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    action = getattr(args, "action", None)
    key = (args.command, action)
    if hasattr(args, "n_paths"):
        n = args.n_paths[action]
        ok = len(args.paths) >= n if key in _VARIADIC else len(args.paths) == n
        if not ok:
            parser.error(
                f"{args.command} {action}: expected {'at least ' if key in _VARIADIC else ''}"
                f"{n} path(s); got {len(args.paths)}"
            )
    if key in _NEEDS_OUT and not args.out:
        parser.error(f"{args.command} {action}: --out is required")
    if key in _NEEDS_INDEX and not args.index:
        parser.error(f"{args.command} {action}: --index is required")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _check_args(parser, args)
    from holocat.pipeline.jobs import format_job_record, job_record

    # first line of every rule's log: where this job runs (host, SLURM job id and node)
    log.info("%s", format_job_record(job_record(os.environ)))
    try:
        args.func(args)
    except (ValueError, TypeError, FileNotFoundError, KeyError, RuntimeError) as exc:
        if args.traceback:
            raise
        log.error("%s: %s", type(exc).__name__, exc)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
