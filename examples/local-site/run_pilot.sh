#!/bin/bash
# Run the real PanDA Pilot 3, unmodified, on one netbroker queue, safely.
#
#   examples/local-site/run_pilot.sh PILOT_DIR QUEUE STORAGE_DIR
#
# PILOT_DIR   the folder of the pilot's pilot.py (make interop: .interop/src is 3.7,
#             .interop/next is 3.11)
# QUEUE       the queue to take a job from (make_site.py: <SITE>_UCORE)
# STORAGE_DIR the site's storage folder (make_site.py: <storage>/<SITE>), read and
#             written by the pilot's mv copy tool under its rucio/ folder
#
# Environment: NETBROKER_URL (default http://127.0.0.1:25080), PILOT_TOKEN (a pilot
# token file: netbroker token create --role pilot --name NAME --file PATH),
# TRF_DIR (Pilot 3.7 only: the folder holding the transformation scripts, which it
# copies instead of downloading), PILOT_PYTHON (default .interop/venv/bin/python),
# PILOT_HOME (where it runs; default a new temporary folder).
#
# The pilot kills every process of its user whose parent is PID 1 when a job ends:
# it runs with PILOT_NOKILL=1 and in a PID namespace of its own (needs root, or
# user namespaces).
set -euo pipefail
pilot=$(cd "$1" && pwd); queue=$2; storage=$(cd "$3" && pwd)
url=${NETBROKER_URL:-http://127.0.0.1:25080}
token=$(cd "$(dirname "${PILOT_TOKEN:?set PILOT_TOKEN to a pilot token file}")" && pwd)/$(basename "$PILOT_TOKEN")
python=${PILOT_PYTHON:-$(pwd)/.interop/venv/bin/python}
home=${PILOT_HOME:-$(mktemp -d -t netbroker-pilot-XXXXXX)}
here=$(cd "$(dirname "$0")" && pwd)
"$python" "$here/pilot_config.py" --pilot "$pilot" --server "$url" > "$home/pilot.cfg"
version=$(cat "$pilot/PILOTVERSION" 2>/dev/null || echo 3.7)
extra=()
case "$version" in
    3.7*) export HARVESTER_WORKDIR=${TRF_DIR:?Pilot 3.7 needs TRF_DIR, the folder of the scripts} ;;
    *) extra=(-b -y -k --baseurls "$url/trf/user") ;;
esac
host=${url#*://}; port=${host##*:}; host=${host%%:*}
cd "$home"
PILOT_NOKILL=1 HARVESTER_PILOT_CONFIG="$home/pilot.cfg" \
PANDA_AUTH_TOKEN=$(basename "$token") PANDA_AUTH_DIR="$token" PANDA_AUTH_ORIGIN=netbroker.local \
    exec unshare --pid --fork --mount-proc --kill-child \
    "$python" "$pilot/pilot.py" -q "$queue" -i PR -j managed --pilot-user generic -w generic \
    --url "http://$host" -p "$port" --use-rucio-traces false -t -d -v 1 \
    --input-destination-dir "$storage/rucio" "${extra[@]}"
