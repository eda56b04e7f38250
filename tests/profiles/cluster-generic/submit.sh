#!/usr/bin/env bash
# Submit command of tests/profiles/cluster-generic: a stand-in for sbatch on one machine. Starts
# the job script Snakemake wrote as its own detached process, logging to
# logs/cluster/<job script name>.log in the working directory, and prints that process's id,
# which the cluster-generic executor records as the external job id. Usage: submit.sh JOBSCRIPT
set -euo pipefail
jobscript="$1"
log="logs/cluster/$(basename "$jobscript" .sh).log"
mkdir -p logs/cluster
nohup bash "$jobscript" >"$log" 2>&1 </dev/null &
echo "$!"
