#!/bin/bash
# Where a SIF start's time goes, from the kernel's scheduler and FUSE tracepoints (perf):
# for each of N runs of `hutch exec IMG.sif true` as an unprivileged user, the times (ms
# after hutch's exec) of the FUSE mount (INIT sent), the first set-up request, the OPEN of
# the payload's /bin/sh and its end (the push-ahead), the exec of /bin/sh, and the exit;
# then the FUSE requests by type. Builds may be compared by running it on each.
# With "instance": N runs of `hutch instance start IMG.sif NAME` until the image's busybox
# httpd answers (bench/svcwait.c; each instance stopped after), with the times of the
# supervisor's fork, its FUSE thread, the mount, the first set-up request, the execs of
# the init, /bin/sh (the environment wrapper), the startscript and httpd, httpd's
# listen(), the CLI's exit and the service answering; then FUSE requests and the page
# faults of the start's processes (hutch's, then the container's).
# usage: bench/timeline.sh BUILD/hutch [N] [instance]   (as root; needs perf)
set -euo pipefail
hutch=$(readlink -f "$1")
n=${2:-3}
mode=${3:-exec}
. "$(dirname "$0")/lib.sh"
command -v perf >/dev/null || { echo "timeline.sh: perf is not installed" >&2; exit 1; }
work=$(mktemp -d /tmp/hutch-timeline.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
copy_build "$hutch" "$work"
chown -R "$user" "$work"
as_user() { runuser -u "$user" -- env HOME="/home/$user" USER="$user" XDG_RUNTIME_DIR="$work/xdg" "$@"; }
as_user mkdir -m 0700 "$work/xdg"
as_user bash "$src/tests/helpers/mkimage.sh" "$work/img" "$work/hutch" >/dev/null
# one start first, untimed: the runs below find /bin/sh in the decompressed-file cache
as_user "$work/hutch" exec "$work/img/image.sif" true
if [ "$mode" = instance ]; then
	port=18382
	cc -O2 -o "$work/svcwait" "$src/bench/svcwait.c"
	trap 'as_user "$work/hutch" instance stop --all --force >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
	echo 'run  fork thread  mount 1st-req   init     sh  start  httpd listen    cli service  (ms after hutch exec)'
	for i in $(seq "$n"); do
		perf record -q -o "$work/p.data" -a -e sched:sched_process_exec,sched:sched_process_fork,sched:sched_process_exit,fuse:fuse_request_send,syscalls:sys_enter_listen,exceptions:page_fault_user \
			-- runuser -u "$user" -- env HOME="/home/$user" USER="$user" XDG_RUNTIME_DIR="$work/xdg" HUTCH_TEST_PORT=$port "$work/svcwait" $port "$work/hutch" -q instance start "$work/img/image.sif" tl >/dev/null 2>&1
		as_user "$work/hutch" instance stop tl >/dev/null 2>&1
		perf script -i "$work/p.data" -F comm,pid,time,event,trace 2>/dev/null > "$work/p.txt"
		awk -v run="$i" -v bin="$work/hutch" '
			function ms(t) { return (t - t0) * 1000 }
			$0 ~ "filename=" bin " " && !t0 { t0 = $3 + 0; cli = $2 }
			!t0 { next }
			/sched_process_fork/ && $2 == cli && !fork { fork = ms($3); match($0, /child_pid=[0-9]+/); sup = substr($0, RSTART + 10, RLENGTH - 10) }
			/sched_process_fork/ && $2 == sup && !thread { thread = ms($3) }
			/FUSE_INIT/ { mount = ms($3) }
			/fuse_request_send/ && !/FUSE_INIT/ && !first { first = ms($3) }
			/filename=\/dev\/fd/ && !init { init = ms($3) }
			/filename=\/bin\/sh/ && !sh { sh = ms($3) }
			/filename=\/.singularity.d\/startscript/ && !start { start = ms($3) }
			/sched_process_exec/ && /filename=\/proc\/self\/exe/ && !httpd { httpd = ms($3) }
			/sys_enter_listen/ && !listen { listen = ms($3) }
			/sched_process_exit/ && $2 == cli { ex = ms($3) }
			/svcwait/ && /sched_process_exit/ { svc = ms($3) }
			/page_fault_user/ { c = ($1 ~ /^(hutch|memfd)/) ? "hutch" : "container"; if ($1 != "perf" && $1 != "runuser" && $1 != "svcwait") pf[c]++ }
			END { printf "%3d %5.2f %6.2f %6.2f %7.2f %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f %7.2f   faults: hutch %d, container %d\n", run, fork, thread, mount, first, init, sh, start, httpd, listen, ex, svc, pf["hutch"], pf["container"] }' "$work/p.txt"
	done
	echo "FUSE requests of the last run:"
	grep fuse_request_send "$work/p.txt" | grep -o '([A-Z_]*)' | sort | uniq -c | sort -rn | awk '{printf "  %-18s %s\n", $2, $1}'
	exit 0
fi
echo 'run  mount  1st-req  open-sh  open-end  exec-sh  exit   (ms after hutch exec)'
for i in $(seq "$n"); do
	perf record -q -o "$work/p.data" -a -e sched:sched_process_exec,sched:sched_process_exit,fuse:fuse_request_send,fuse:fuse_request_end \
		-- runuser -u "$user" -- env XDG_RUNTIME_DIR="$work/xdg" "$work/hutch" exec "$work/img/image.sif" true >/dev/null 2>&1
	perf script -i "$work/p.data" -F comm,pid,time,event,trace 2>/dev/null > "$work/p.txt"
	awk -v run="$i" -v bin="$work/hutch" '
		function ms(t) { return (t - t0) * 1000 }
		$0 ~ "filename=" bin " " && !t0 { t0 = $3 + 0; pid = $2 }
		!t0 { next }
		/FUSE_INIT/ { mount = ms($3) }
		/fuse_request_send/ && !/FUSE_INIT/ && !first { first = ms($3) }
		/fuse_request_send/ && /FUSE_OPEN/ { match($0, /req [0-9]+/); req[substr($0, RSTART + 4, RLENGTH - 4)] = ms($3) }
		/fuse_request_end/ { match($0, /req [0-9]+/); r = substr($0, RSTART + 4, RLENGTH - 4)
			if (r in req && ms($3) - req[r] > openlen) { openlen = ms($3) - req[r]; ostart = req[r]; oend = ms($3) } }
		/filename=\/bin\/sh/ && !sh { sh = ms($3) }
		/sched_process_exit/ && $2 == pid { ex = ms($3) }
		END { printf "%3d %6.2f %8.2f %8.2f %9.2f %8.2f %6.2f\n", run, mount, first, ostart, oend, sh, ex }' "$work/p.txt"
done
echo "FUSE requests of the last run:"
grep fuse_request_send "$work/p.txt" | grep -o '([A-Z_]*)' | sort | uniq -c | sort -rn | awk '{printf "  %-18s %s\n", $2, $1}'
