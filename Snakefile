# holocat: raw holotomography scans of composite cathodes -> particle-level science.
# Entry point: configuration, report and rule includes only; every algorithm lives in src/holocat.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/phase.smk"
include: "workflow/rules/reconstruct.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/attributes.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/fem.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
