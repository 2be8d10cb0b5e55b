# Nothing of hutch outlives the payload: the FUSE server exits with it, even after kill -9,
# and a payload that waits for any child is never held up by it.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif

run "$HUTCH" exec "$I" true
leftovers "after a normal exit"
"$HUTCH" exec "$I" sleep 300 </dev/null >/dev/null 2>&1 &
pid=$!
for i in $(seq 50); do pgrep -u "$(id -u)" -x hutch-squashfs >/dev/null && break; sleep 0.1; done
check "the squashfs server runs while the payload does" 'pgrep -u "$(id -u)" -x hutch-squashfs >/dev/null'
srv=$(pgrep -u "$(id -u)" -x hutch-squashfs | head -1)
if [ -x "$(dirname "$HUTCH")/hutch-squashfs" ]; then
	check "the server is the static hutch-squashfs found beside hutch" '[ "$(readlink "/proc/$srv/exe")" = "$(dirname "$HUTCH")/hutch-squashfs" ]'
else
	check "without hutch-squashfs beside it, hutch serves from a copy of itself" '[ "$(readlink "/proc/$srv/exe")" = "$HUTCH" ]'
fi
for i in $(seq 50); do [ "$(cat /proc/$pid/comm 2>/dev/null)" = sleep ] && break; sleep 0.1; done
check "the payload runs as the hutch pid itself (exec, no wrapper process)" '[ "$(cat /proc/$pid/comm)" = sleep ]'
kill -9 "$pid"
wait "$pid" 2>/dev/null
leftovers "after kill -9 of the payload"
"$HUTCH" exec --pid "$I" sleep 300 </dev/null >/dev/null 2>&1 &
pid=$!
sleep 0.5
kill -9 "$pid"
wait "$pid" 2>/dev/null
leftovers "after kill -9 of a --pid launcher"
"$HUTCH" exec "$I" sleep 300 </dev/null >/dev/null 2>&1 &
pid=$!
sleep 0.3
kill -TERM "$pid"
wait "$pid"
rc=$?
check "SIGTERM to the hutch pid reaches the payload" '[ $rc -eq 143 ]'
"$HUTCH" exec --pid "$I" sleep 300 </dev/null >/dev/null 2>&1 &
pid=$!
sleep 0.5
kill -TERM "$pid"
wait "$pid"
rc=$?
check "SIGTERM reaches a --pid payload through the init" '[ $rc -eq 143 ]'
# a caller that ignores SIGCHLD: the init (and the launcher, the server's monitor) would
# inherit the ignore, the kernel would reap their children, and the init wait for ever
run timeout -k 5 30 python3 -c 'import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])' "$HUTCH" exec --pid "$I" sh -c 'exit 3'
check "a caller that ignores SIGCHLD gets a --pid payload's exit status" '[ $RC -eq 3 ]'
leftovers "a --pid run whose caller ignored SIGCHLD"
run timeout -k 5 30 python3 -c 'import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])' "$HUTCH" exec "$I" sh -c 'exit 4'
check "... and a plain run's" '[ $RC -eq 4 ]'
# tests/helpers/reaper.c, static: waits for every child with wait() until ECHILD, as tini
# or Python's os.wait() do (a shell's `wait` waits only for the jobs it started)
run timeout 10 "$HUTCH" exec -B "$REAPER_STATIC:/opt/reaper" "$I" /opt/reaper sh -c 'sleep 0.2 & echo waited'
check "a payload that waits for all children is not held up" 'out_is waited && [ $RC -eq 0 ]'
# hutch alone, without the static server beside it: a copy of itself serves
mkdir "$T/alone" && cp "$HUTCH" "$T/alone/hutch"
run "$T/alone/hutch" exec "$I" cat /etc/hutch-test-marker
check "hutch without hutch-squashfs beside it still runs a SIF (its own copy serves)" '[ $RC -eq 0 ] && [ -s "$OUT" ]'
leftovers "a copy of hutch alone"
start=$(date +%s%N)
x=$(timeout 10 "$HUTCH" exec "$I" echo piped)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "stdout reaches EOF when the payload exits (${ms} ms)" '[ "$x" = piped ] && [ $ms -lt 5000 ]'
leftovers "lifecycle"
finish
