#!/bin/bash
# The example payload: $1 the input files (comma-separated, staged in beside it),
# $2 the output file to write (the pilot stages it out and reports it).
for f in ${1//,/ }; do test -s "$f" || { echo "no input $f"; exit 4; }; done
{ echo processed; cat ${1//,/ } | md5sum; } > "$2"
exit 0
