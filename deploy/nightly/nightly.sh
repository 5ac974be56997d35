#!/usr/bin/env bash
# The nightly wheel-cache refresh: rebuild stale builder images, push them and
# their manifests, then build what the plan says is missing, publish each
# platform's index, and publish the report next to the index.
#
# Configure with environment variables:
#   ORCHESTRATE_MATRIX        matrix file            (default: platforms.yaml)
#   ORCHESTRATE_REQUIREMENTS  requirements file(s), space-separated
#                             (default: upper-constraints.txt)
#   ORCHESTRATE_WORKDIR       logs and reports       (default: /var/lib/orchestrate/work)
#   ORCHESTRATE_REPORTS_DIR   where reports are published; served next to the index
#                             (default: <index root>/reports)
#   ORCHESTRATE_MAX_AGE       rebuild images older than this many days (default: 7)
#   ORCHESTRATE_DEADLINE      seconds after which no new wheel job starts; what finished
#                             is still published and reported (default: 18000, 5 hours)
#   ORCHESTRATE_METRICS_FILE  Prometheus metrics (default: <workdir>/orchestrate.prom);
#                             JUnit XML goes to <workdir>/junit.xml
#
# Exit codes, for CI: 0 all good; 1 some image or wheel failed (the rest is
# published: a failing platform does not hold back the others); 2 bad input;
# 3 an engine, registry or the index is unreachable; 4 a rebuilt wheel differs
# from the published one; 130 interrupted.
set -uo pipefail

matrix=${ORCHESTRATE_MATRIX:-platforms.yaml}
read -r -a reqs <<<"${ORCHESTRATE_REQUIREMENTS:-upper-constraints.txt}"
workdir=${ORCHESTRATE_WORKDIR:-/var/lib/orchestrate/work}
max_age=${ORCHESTRATE_MAX_AGE:-7}
deadline=${ORCHESTRATE_DEADLINE:-18000}
req_args=()
for r in "${reqs[@]}"; do req_args+=(-r "$r"); done

echo "== $(date -u +%FT%TZ) images refresh"
orchestrate images refresh --matrix "$matrix" --workdir "$workdir" --max-age "$max_age"
images_rc=$?
# Bad input or a missing environment stops the night; failed platforms do not.
case $images_rc in 2|3|130) exit $images_rc ;; esac

echo "== $(date -u +%FT%TZ) build"
# JUnit XML for the CI's test view; Prometheus metrics for node_exporter's textfile
# collector (ORCHESTRATE_METRICS_FILE, default under the workdir).
metrics=${ORCHESTRATE_METRICS_FILE:-$workdir/orchestrate.prom}
orchestrate build --matrix "$matrix" "${req_args[@]}" --workdir "$workdir" --deadline "$deadline" \
  --junit-xml "$workdir/junit.xml" --metrics "$metrics"
build_rc=$?

# Publish the report (JSON + HTML + logs) where people look: next to the index.
latest=$(readlink -f "$workdir/reports/latest.json" 2>/dev/null || true)
if [ -n "$latest" ]; then
  root=$(orchestrate matrix show --matrix "$matrix" --index-root)
  dest=${ORCHESTRATE_REPORTS_DIR:-$root/reports}
  mkdir -p "$dest"
  run=$(basename "$latest" .json)
  cp "$workdir/reports/$run.json" "$workdir/reports/$run.html" "$dest/"
  cp -r "$workdir/logs/$run" "$dest/logs-$run" 2>/dev/null || true
  sed "s#\.\./logs/$run/#logs-$run/#g" "$workdir/reports/$run.html" > "$dest/$run.html"
  ln -sfn "$run.html" "$dest/latest.html"
  echo "report: $dest/$run.html"
fi

[ "$build_rc" -ne 0 ] && exit "$build_rc"
exit "$images_rc"
