#!/usr/bin/env bash
# reports/trusted: the correction (`rlddm infer`'s default) on 1,000 fresh participants of each named
# validation design, for both general networks: the share trusted, by method, and the time.
# The human data's reports are reports/real/*_amortized (`rlddm validate real-data`,
# docs/validation.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/venv.sh)
for network in general general-dual; do
    for design in seed hddm_pst gershman stable300 deadline; do
        "$PY" -m amortized_rlddm.cli check --checkpoint "$network" --design "$design" --participants "${PARTICIPANTS:-1000}" \
            --seed 0 --quiet --out "reports/trusted/$network/$design"
    done
done
"$PY" -c "from amortized_rlddm.validation.posterior_check import trusted_table; print(trusted_table('reports/trusted'))" \
    > reports/trusted/table.md
