#!/bin/sh
# The fine-tune test stage: prints the progress protocol (docs/fine-tune.md) and serves GET
# /healthz, behaving as the run's `options` ask, found in $SYNTHORG_FINE_TUNE_STAGE_CONFIG:
#   "sleep":"S"              seconds between progress lines (default 0.1)
#   "fail_stage":"NAME"      that stage prints ERROR: and exits 3
#   "exit_stage":"NAME"      that stage exits 7 without an ERROR: line
#   "hang_stage":"NAME"      that stage never ends (until stopped)
#   "hold_stage":"NAME"      that stage sleeps "hold_seconds" before completing, on its first attempt
#   "garbage_stage":"NAME"   that stage prints malformed and very long lines first
#   "quiet_stage":"NAME"     that stage never opens its health port
#   "check_mounts":true      stages check the data directory: written where they may, read-only where not
config=$SYNTHORG_FINE_TUNE_STAGE_CONFIG
# Keys are sorted and "stage" comes after "config" (where options live): the last match is ours.
field() { echo "$config" | sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
is() { case "$config" in *"\"$1\":\"$stage\""*) return 0 ;; esac; return 1; }
stage=$(field stage)
run=$(field run_id)
data=$(field data_dir)
pause=$(field sleep)
[ -n "$pause" ] || pause=0.1
trap 'echo "stopped by a signal"; exit 143' TERM INT

echo "STAGE_START:$stage"
if [ "$stage" = preflight ]; then
  echo "STAGE_COMPLETE:preflight"
  exit 0
fi
if ! is quiet_stage; then
  mkdir -p /tmp/www
  echo '{"status":"healthy","uptime_seconds":1}' >/tmp/www/healthz
  httpd -f -p "${SYNTHORG_LISTEN_HOST:-0.0.0.0}:${SYNTHORG_FINE_TUNE_HEALTH_PORT:-15002}" -h /tmp/www &
fi
if is garbage_stage; then
  echo "PROGRESS:lots"
  echo "PROGRESS:1.5"
  echo "STAGE_START:"
  echo "ERROR:"
  echo "just some chatter from the trainer"
  printf 'PROGRESS:0.5'; head -c 100000 /dev/zero | tr '\0' '7'; echo
  head -c 200000 /dev/zero | tr '\0' 'x'; echo
fi
if case "$config" in *'"check_mounts":true'*) true ;; *) false ;; esac; then
  if echo "$config" | grep -q '"read_only":true'; then
    if touch "$data/$stage.$run" 2>/dev/null; then echo "ERROR:$data is writable in $stage"; exit 4; fi
    echo "the data directory is read-only here, as it should be"
  else
    touch "$data/$stage.$run" || { echo "ERROR:cannot write $data in $stage"; exit 5; }
  fi
fi
for p in 0.25 0.5 0.75; do
  echo "PROGRESS:$p"
  sleep "$pause"
  if is fail_stage && [ "$p" = 0.5 ]; then
    echo "ERROR:injected failure in $stage"
    exit 3
  fi
done
if is exit_stage; then
  echo "something went wrong, but no protocol line says so"
  exit 7
fi
if is hang_stage; then
  sleep 3600 &
  wait $!
fi
if is hold_stage && echo "$config" | grep -q '"attempt":1,'; then
  sleep "$(field hold_seconds)" &
  wait $!
fi
[ "$stage" = training ] && echo "CHECKPOINT:$data/checkpoint-$run"
echo "PROGRESS:1"
echo "STAGE_COMPLETE:$stage"
