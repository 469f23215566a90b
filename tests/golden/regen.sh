#!/bin/sh
# Regenerates the golden files of tests/e2e/test_explain_assess.py.
# Review the diff before committing: a golden file is a claim about output.
set -eu
cd "$(dirname "$0")/../.."
bin=${STOCKADE_BIN:-build/src/stockade}
env=examples/datalab/environment.yaml
g=tests/golden
for who in s-jeff s-joe s-john s-jane; do
    "$bin" assess --env $env examples/datalab/$who.yaml > $g/assess-$who.txt
    "$bin" assess --env $env -o json examples/datalab/$who.yaml > $g/assess-$who.json
done
for who in s-jeff s-jane; do
    for backend in kubernetes sim; do
        "$bin" explain --env $env --backend $backend examples/datalab/$who.yaml > $g/explain-$who.$backend.txt
        "$bin" explain --env $env --backend $backend -o json examples/datalab/$who.yaml > $g/explain-$who.$backend.json
    done
done
"$bin" explain --backend kubernetes examples/agent.yaml > $g/explain-agent.kubernetes.txt
"$bin" netpol trace --env $env --matrix examples/datalab/s-jeff.yaml > $g/netpol-s-jeff.matrix.txt
