#!/bin/bash
# The v4 grid as the study fills it: one cell per `scripts/reproduce.py --max_cells=1` call, each
# committed with the rebuilt report (one cell per commit, as issue 33 asks). Several loops may run
# side by side on disjoint methods (BUILD_NOTES.md, "The grid, first sitting": two cells side by
# side do ~1.37x the work per hour), so each commits only its own cell folder. Stop one after its
# current cell with `touch logs/STOP_<TAG>`. Example:
#   TAG=meta METHODS=mwnet,mnwnet,rmnwnet,rmnwnet_gce experiments/reproduction/cell_loop.sh &
#   TAG=light METHODS=base,gce,oracle SEEDS=1,2,3,4 experiments/reproduction/cell_loop.sh &
cd "$(dirname "$0")/../.."
SETTINGS=${SETTINGS:-uniform40}; SEEDS=${SEEDS:-0,1,2,3,4}; N=${N:-40}; METHODS=${METHODS:?}; TAG=${TAG:?}
for i in $(seq 1 $N); do
  [ -f logs/STOP_$TAG ] && { echo "STOP_$TAG: stopping"; break; }
  before=$(date -u +%H:%M)
  mkdir -p logs; python scripts/reproduce.py --protocol=v4 --settings=$SETTINGS --seeds=$SEEDS --methods=$METHODS --max_cells=1 > logs/grid_cell_$TAG.log 2>&1
  rc=$?
  cat logs/grid_cell_$TAG.log >> logs/grid_v4_$TAG.log
  label=$(grep -o "cell [0-9]*/[0-9]*: [^ ,]*" logs/grid_cell_$TAG.log | tail -1 | sed 's/cell [0-9]*\/[0-9]*: //')
  [ $rc -ne 0 ] && { echo "reproduce.py failed ($rc) at $label"; break; }
  [ -z "$label" ] && { echo "nothing left to run"; break; }
  paths="results/runs_v4/$label results/REPRODUCTION.md results/reproduction.json results/plots"
  for try in 1 2 3 4 5 6; do
    git add $paths && git commit -q -m "v4 grid: $label (started $before UTC)" -- $paths && break
    sleep 7
  done
  echo "$(date -u +%H:%M) committed $label"
done
