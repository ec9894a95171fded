#!/usr/bin/env bash
# Alternate two trees of colayers (A B A B ...) on the same training epochs of the default study and print each
# run's in-process figures (benchmarks/bench_epoch.py: wall and process CPU time per method) and its whole-process
# CPU time (user + system, from /usr/bin/time).
#   bash benchmarks/ab_epoch.sh BEFORE_TREE AFTER_TREE [PAIRS=5] [EPOCHS=3] [METHODS...]
#   PRESET=warcraft bash benchmarks/ab_epoch.sh ...   (another study preset; default: the default study)
# On a loaded machine compare the CPU columns, not wall time.
set -euo pipefail
before=$1 after=$2 pairs=${3:-5} epochs=${4:-3}
shift $(( $# < 4 ? $# : 4 ))
methods=${*:-spo+ fy imle blackbox identity}
here=$(cd "$(dirname "$0")" && pwd)
for i in $(seq "$pairs"); do
  for side in before after; do
    tree=$before; [ "$side" = after ] && tree=$after
    # shellcheck disable=SC2086
    PYTHONPATH=$tree /usr/bin/time -f "$side whole-process cpu %U + %S s" python "$here/bench_epoch.py" \
      --epochs "$epochs" --preset "${PRESET:-default}" $methods | sed "s/^/$side /"
  done
done
