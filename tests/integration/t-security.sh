# seccomp profiles (OCI/Docker JSON and the built-in default), capabilities and ids: what
# an ordinary user's payload never gets, and what root may ask for.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif
R=$IMAGES/rootfs
cat > "$T/nomkdir.json" <<'EOF'
{"defaultAction": "SCMP_ACT_ALLOW",
 "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_NOSUCH"],
 "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
              {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}
EOF

run "$HUTCH" exec --security "seccomp:$T/nomkdir.json" "$I" mkdir /tmp/made-inside
check "a profile denying mkdir: mkdir fails with EPERM inside" '[ $RC -eq 1 ] && err_has "Operation not permitted" && [ ! -e /tmp/made-inside ]'
check "... unknown system calls are skipped with a warning naming them" 'err_has "unknown system call .no_such_call., skipping"'
mkdir "$T/outside" && rmdir "$T/outside"
check "... and only there: mkdir works on the host meanwhile" '[ $? -eq 0 ]'
run "$HUTCH" exec "$I" sh -c 'mkdir /tmp/hutch-sec-$$ && rmdir /tmp/hutch-sec-$$'
check "... and in a container without the profile" '[ $RC -eq 0 ]'
run "$HUTCH" exec --security "seccomp:$T/nomkdir.json" "$I" sh -c 'grep ^Seccomp: /proc/self/status'
check "the filter is on the payload (Seccomp: 2)" 'out_has "Seccomp:.2"'

printf '{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [{"names": ["execve", "brk", "mmap", "munmap", "mprotect", "arch_prctl", "set_tid_address", "exit_group", "exit", "getuid", "geteuid", "getpid", "write", "read", "rt_sigaction", "rt_sigprocmask", "ioctl", "uname", "getppid", "readlink", "readlinkat", "newfstatat", "fstat", "stat", "getcwd", "open", "openat", "close", "execveat", "prlimit64", "set_robust_list", "rseq", "futex", "getrandom", "access", "faccessat", "faccessat2", "lseek", "sysinfo", "clock_gettime", "gettid", "wait4", "fcntl", "dup2", "dup3", "pipe", "pipe2"], "action": "SCMP_ACT_ALLOW"}]}\n' > "$T/allow.json"
run "$HUTCH" exec --security "seccomp:$T/allow.json" "$I" sh -c 'echo in; mkdir /tmp/x'
check "an allow list: what it lists runs, the rest fails with defaultErrnoRet" 'out_is in && err_has "not implemented"'

run "$HUTCH" exec --security seccomp:default "$I" unshare -U true
check "seccomp:default: unshare is refused" '[ $RC -ne 0 ] && err_has "Operation not permitted"'
run "$HUTCH" exec --security seccomp:default "$I" sh -c 'mkdir /tmp/hutch-sec-$$ && rmdir /tmp/hutch-sec-$$ && echo fine'
check "seccomp:default: ordinary work runs" 'out_is fine'

printf '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [' > "$T/trunc.json"
run "$HUTCH" exec --security "seccomp:$T/trunc.json" "$I" true
check "a malformed profile is one line" 'fails_with "trunc.json" && err_has "not valid JSON"'
printf '{"syscalls": []}' > "$T/nodef.json"
run "$HUTCH" exec --security "seccomp:$T/nodef.json" "$I" true
check "a profile without defaultAction is refused" 'fails_with "defaultAction is missing"'
printf '{"defaultAction": "SCMP_ACT_MAYBE"}' > "$T/badact.json"
run "$HUTCH" exec --security "seccomp:$T/badact.json" "$I" true
check "an unknown action is refused" 'fails_with "unknown action .SCMP_ACT_MAYBE."'
printf '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}' > "$T/badarg.json"
run "$HUTCH" exec --security "seccomp:$T/badarg.json" "$I" true
check "an argument index beyond 5 is refused" 'fails_with "index is 0 to 5"'
run "$HUTCH" exec --security "seccomp:$T/none.json" "$I" true
check "a missing profile is one line" 'fails_with "none.json"'
run "$HUTCH" exec --security apparmor:unconfined "$I" true
check "--security apparmor: is refused" '[ $RC -ne 0 ] && [ "$(wc -l < "$ERR")" -eq 1 ] && err_has "not seccomp:"'

run "$HUTCH" exec "$I" sh -c 'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status'
if [ "$MODE" = user ]; then
	check "a user's payload: no capabilities, no_new_privs" 'out_has "CapEff:.0000000000000000" && out_has "NoNewPrivs:.1"'
	for o in "--security uid:0" "--security gid:0" --allow-setuid --keep-privs "--add-caps CAP_SYS_ADMIN"; do
		run "$HUTCH" exec $o "$I" true
		check "$o is refused for users" 'fails_with "is for root"'
	done
	run "$HUTCH" exec --drop-caps all --no-privs "$I" true
	check "--drop-caps and --no-privs are harmless for users" '[ $RC -eq 0 ]'
else
	check "root's payload keeps its capabilities by default" '! out_has "CapEff:.0000000000000000"'
	run "$HUTCH" exec --security uid:65534,gid:65534 "$I" sh -c 'echo $(id -u) $(id -g); grep ^CapEff /proc/self/status'
	check "--security uid:N,gid:N (root)" 'out_has "^65534 65534" && out_has "CapEff:.0000000000000000"'
	run "$HUTCH" exec --no-privs "$I" grep ^CapBnd /proc/self/status
	check "--no-privs: no capability, not even in the bounding set" 'out_has "CapBnd:.0000000000000000"'
	run "$HUTCH" exec --no-privs --add-caps CAP_NET_BIND_SERVICE,chown "$I" grep ^CapEff /proc/self/status
	check "--no-privs --add-caps: just those" 'out_has "CapEff:.0000000000000401"'
	run "$HUTCH" exec --drop-caps CAP_NET_RAW "$I" grep ^CapBnd /proc/self/status
	check "--drop-caps: the rest stays" '[ $RC -eq 0 ] && [ $(( 0x$(awk "{print \$2}" "$OUT") >> 13 & 1 )) -eq 0 ] && [ $(( 0x$(awk "{print \$2}" "$OUT") & 1 )) -eq 1 ]'
	run "$HUTCH" exec --add-caps CAP_NOPE "$I" true
	check "an unknown capability is refused" 'fails_with "unknown capability .CAP_NOPE."'
fi
# a command joining an instance runs under the instance's profile and privileges, unless
# it names its own
trap '"$HUTCH" instance stop secinst >/dev/null 2>&1; rm -rf "$T"' EXIT
run "$HUTCH" instance start --security "seccomp:$T/nomkdir.json" --no-privs "$I" secinst
check "an instance starts under a profile" '[ $RC -eq 0 ]'
rm "$T/nomkdir.json" # kept beside the instance's state as the start read it
run "$HUTCH" exec instance://secinst mkdir /tmp/joined-mkdir
check "exec instance:// runs under the instance's profile: mkdir fails with EPERM" \
	'[ $RC -ne 0 ] && err_has "Operation not permitted"'
run "$HUTCH" exec instance://secinst grep -E "^(Seccomp|CapBnd):" /proc/self/status
# (--no-privs empties the bounding set for root; a user's payload has no privileges anyway)
check "... its filter and the instance's --no-privs are on the joined process" \
	'out_has "Seccomp:.2" && { [ "$MODE" = user ] || out_has "CapBnd:.0000000000000000"; }'
run "$HUTCH" exec --security seccomp:default instance://secinst sh -c 'mkdir /tmp/own-$$ && rmdir /tmp/own-$$ && echo made; unshare -U true'
check "... a profile of the command's own replaces it" 'out_is made && err_has "Operation not permitted"'
"$HUTCH" instance stop secinst >/dev/null 2>&1
for img in "$I" "$R"; do
	run "$HUTCH" exec "$img" awk '$5 == "/" {print $6}' /proc/self/mountinfo
	check "the image root is nosuid ($(basename "$img"))" 'out_has nosuid'
done
leftovers "security"
finish
