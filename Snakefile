# dynamax-bench: one DAG from backbones to paper_tables/.
#   snakemake --cores all paper_tables/                              # embedded default profile
#   snakemake paper_tables/ --cores all --configfile config/smoke.yaml   # target before --configfile
#   snakemake --cores 1 results/default/cells/smollm2/triviaqa/oracle.json   # one cell
from snakemake.utils import min_version

from dynamax_bench.config import ConfigError, validate_config
from dynamax_bench.errors import stop

min_version("9.0")

# A profile file is complete on its own: the default is loaded only when none is given, or when the
# file given is a layer over it (no `profile` key, e.g. config/lossless.yaml): Snakemake merges the
# command line's files over this one (dynamax_bench/config.py `layered` reads them the same way).
if "profile" not in config:

    configfile: f"{workflow.basedir}/config/default.yaml"


# The schema, with its defaults filled in; a bad profile stops with one line (dynamax_bench/errors.py).
try:
    validate_config(config)
except ConfigError as err:
    stop(err, where=", ".join(map(str, workflow.configfiles)))


report: "workflow/report/workflow.rst"


rule all:
    """Default target: everything in paper_tables/."""
    input:
        "paper_tables",
    default_target: True
    localrule: True


include: "workflow/rules/common.smk"
include: "workflow/rules/backbones.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/classifiers.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/flops.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/latency.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/check.smk"
include: "workflow/rules/targets.smk"
