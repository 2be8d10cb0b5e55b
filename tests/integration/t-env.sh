# The payload's forced environment (--env, --env-file, *ENV_ prefixes) and the launcher
# options given as APPTAINER_/SINGULARITY_/HUTCH_ environment variables.
. "$(dirname "$0")/lib.sh"
I=$IMAGES/image.sif

# A key reaches the container's shell wrapper as shell text: it must be a POSIX name.
for key in 'A;echo INJECTED;B' 'A B' '1A' 'A-B' '$(echo INJECTED)' ''; do
	run "$HUTCH" exec --env "$key=1" "$I" true
	check "--env with the key '$key' is refused" 'fails_with "--env" && ! grep -q INJECTED "$OUT"'
done
run env 'HUTCHENV_A;echo INJECTED;B=1' "$HUTCH" exec "$I" true
check "HUTCHENV_ with a bad key is refused" 'fails_with "HUTCHENV_" && ! grep -q INJECTED "$OUT"'
run env 'APPTAINERENV_A`echo INJECTED`=1' "$HUTCH" exec "$I" true
check "APPTAINERENV_ with a bad key is refused" 'fails_with "APPTAINERENV_" && ! grep -q INJECTED "$OUT"'
run env 'SINGULARITYENV_X Y=1' "$HUTCH" exec "$I" true
check "SINGULARITYENV_ with a bad key is refused" 'fails_with "SINGULARITYENV_"'
leftovers "bad env keys"

# Values are shell text the container's shell evaluates after the image's env scripts, as
# Apptainer's are: double-quote rules, so $NAME, ${NAME}, $(cmd) and `cmd` expand, \$ is a '$'.
run "$HUTCH" exec --env 'PATH=$PATH:/extra' "$I" sh -c 'printf "%s" "$PATH"'
check "--env PATH=\$PATH:/extra extends the image's PATH" 'out_is /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/extra'
run "$HUTCH" exec --env 'V=$IMAGE_VAR-2' "$I" sh -c 'printf "%s" "$V"'
check "--env sees what %environment set" 'out_is from-image-2'
run "$HUTCH" exec --env 'V=$(echo SUB) `echo BT` \$lit "q" it'"'"'s \' "$I" sh -c 'printf "%s" "$V"'
check "--env values expand \$(), backticks; \\\$, quotes and a final backslash stay" 'out_is "SUB BT \$lit \"q\" it'"'"'s \\"'
run env 'APPTAINERENV_V=${APPTAINER_NAME}x' "$HUTCH" exec "$I" sh -c 'printf "%s" "$V"'
check "APPTAINERENV_ values are evaluated inside (\$APPTAINER_NAME is the container's)" 'out_is image.sifx'
run "$HUTCH" exec --env 'D=$(printf "%s-%s" a b) ${HUTCH_T_NONE:-"dflt"}' "$I" sh -c 'printf "%s" "$D"'
check "quotes inside \$( ) and \${ } are the inner command's own" 'out_is "a-b dflt"'
run "$HUTCH" exec --env 'V=$(echo' "$I" true
check "an --env value the shell cannot read fails in one line" 'fails_with "cannot evaluate the value of V"'
printf '%s\n' "F1='\$(echo NOT_RUN) \$HOME'" 'F2=${HOST_VAR}-f' > "$T/envfile"
run env HOST_VAR=h "$HUTCH" exec --env-file "$T/envfile" "$I" sh -c 'printf "%s|%s" "$F1" "$F2"'
check "--env-file values are expanded once, on reading the file" 'out_is "\$(echo NOT_RUN) \$HOME|h-f"'

run env APPTAINERENV_LD_LIBRARY_PATH=/mylib "$HUTCH" exec "$I" sh -c 'printf "%s" "$LD_LIBRARY_PATH"'
check "a forced LD_LIBRARY_PATH gets /.singularity.d/libs after it (as Apptainer)" 'out_is /mylib:/.singularity.d/libs'

# --no-eval (or APPTAINER_NO_EVAL): values are data, whatever they hold.
val='q'"'"'s "d" $(echo SUB) `echo BT` $HOME \ ; echo X
line2'
run "$HUTCH" exec --no-eval --env "V=$val" "$I" sh -c 'printf "%s" "$V"'
check "--no-eval: --env value with quotes, \$(), backticks and a newline arrives verbatim" '[ "$(cat "$OUT")" = "$val" ]'
run env "HUTCHENV_V=$val" APPTAINER_NO_EVAL=1 "$HUTCH" exec "$I" sh -c 'printf "%s" "$V"'
check "APPTAINER_NO_EVAL=1: HUTCHENV_ value arrives verbatim" '[ "$(cat "$OUT")" = "$val" ]'
run "$HUTCH" exec --no-eval --env "PREPEND_PATH=/a'b\$(echo SUB)" "$I" sh -c 'printf "%s" "$PATH"'
check "--no-eval: PREPEND_PATH value is data too" 'out_has "^/a.b\$(echo SUB):/usr/local/sbin"'
run "$HUTCH" exec --no-eval --env-file "$T/envfile" "$I" sh -c 'printf "%s" "$F1"'
check "--no-eval: --env-file values are not evaluated inside either" 'out_is "\$(echo NOT_RUN) \$HOME"'
leftovers "env values"

# The caller's variables: hidden from the image's env scripts, back after them where unset
run env OVERRIDE_ME=host HOST_EMPTY= HOST_VAR=h "$HUTCH" exec "$I" sh -c 'echo "$OVERRIDE_ME|$HOST_VAR|${HOST_EMPTY-unset}|$(env | grep -c HUTCH_HOST)"'
check "%environment wins over the caller's variable; others pass, empty ones too; nothing of the mechanism shows" 'out_is "image-value|h||0"'

cp -a "$IMAGES/rootfs" "$T/envimg"
printf 'IFS=:\nexport GREET="${GREET:-from-image}"\n' > "$T/envimg/.singularity.d/env/50-greet.sh"
run env GREET=host OTHER=o "$HUTCH" exec --env 'V=[$OTHER]' "$T/envimg" sh -c 'echo "$GREET $OTHER $V"'
check "a script's \${GREET:-default} keeps the image's value (the caller's GREET is hidden from it), whatever IFS it leaves; --env sees the caller's" 'out_is "from-image o [o]"'
mkdir -p "$T/nosh/bin" "$T/nosh/.singularity.d" && cp "$(command -v busybox)" "$T/nosh/bin/busybox"
printf 'P=a\\$b\n' > "$T/nosh.env"
run "$HUTCH" exec --env-file "$T/nosh.env" --env 'Q=c\$d' "$T/nosh" /bin/busybox env
check "without a /bin/sh, values are set by the double-quote rules all the same" 'out_has "^P=a\$b$" && out_has "^Q=c\$d$"'

# Launcher options from APPTAINER_<OPTION>, SINGULARITY_<OPTION> and HUTCH_<OPTION>.
run env HOST_VAR=h APPTAINER_CLEANENV=1 "$HUTCH" exec "$I" sh -c 'echo "[$HOST_VAR]"'
check "APPTAINER_CLEANENV=1 is --cleanenv" 'out_is "[]"'
run env HOST_VAR=h APPTAINER_CLEANENV=false "$HUTCH" exec "$I" sh -c 'echo "[$HOST_VAR]"'
check "APPTAINER_CLEANENV=false leaves the environment" 'out_is "[h]"'
run env HOST_VAR=h SINGULARITY_CLEANENV=TRUE "$HUTCH" exec "$I" sh -c 'echo "[$HOST_VAR]"'
check "SINGULARITY_CLEANENV=TRUE is --cleanenv" 'out_is "[]"'
run env APPTAINER_CLEANENV=maybe "$HUTCH" exec "$I" true
check "APPTAINER_CLEANENV=maybe is refused in one line" 'fails_with "APPTAINER_CLEANENV"'
# the legacy prefix, as Apptainer words it; what a prefix may never set
run env SINGULARITYENV_LEG=s "$HUTCH" exec "$I" sh -c 'echo "$LEG"'
check "SINGULARITYENV_X alone: set, with Apptainer's note that APPTAINERENV_X is preferred" 'out_is s && err_has "^INFO: *Environment variable SINGULARITYENV_LEG is set, but APPTAINERENV_LEG is preferred$"'
run env APPTAINERENV_LEG=a SINGULARITYENV_LEG=s "$HUTCH" exec "$I" sh -c 'echo "$LEG"'
check "... beside APPTAINERENV_X of another value: that one, and Apptainer's two warnings" 'out_is a && err_has "^WARNING: SINGULARITYENV_LEG and APPTAINERENV_LEG have different values, using the latter$" && err_has "^WARNING: Skipping environment variable \[SINGULARITYENV_LEG=s\], LEG is already overridden with different value \[a\]$"'
run env APPTAINERENV_APPTAINER_SHELL=/x SINGULARITYENV_SINGULARITY_APPNAME=y "$HUTCH" exec "$I" sh -c 'echo "[${APPTAINER_SHELL:-}${SINGULARITY_APPNAME:-}]"'
check "APPTAINERENV_APPTAINER_SHELL and the like are not permitted, as in Apptainer" 'out_is "[]" && err_has "^WARNING: Overriding APPTAINER_SHELL environment variable with APPTAINERENV_APPTAINER_SHELL is not permitted$" && err_has "Overriding SINGULARITY_APPNAME environment variable with SINGULARITYENV_SINGULARITY_APPNAME is not permitted"'
# --FLAG=true|false for a flag of no value, as Go's pflag takes it (wrapper scripts write them)
run env HOST_VAR=h "$HUTCH" exec --cleanenv=true "$I" sh -c 'echo "[$HOST_VAR]"'
check "--cleanenv=true is --cleanenv" '[ $RC -eq 0 ] && out_is "[]"'
run env HOST_VAR=h APPTAINER_CLEANENV=1 "$HUTCH" exec --cleanenv=false "$I" sh -c 'echo "[$HOST_VAR]"'
check "--cleanenv=false is no --cleanenv, over APPTAINER_CLEANENV=1" '[ $RC -eq 0 ] && out_is "[h]"'
# a flag's last value wins, as with Apptainer's flags
run env HOST_VAR=h "$HUTCH" exec --cleanenv --cleanenv=false "$I" sh -c 'echo "[$HOST_VAR]"'
check "--cleanenv --cleanenv=false: the last value wins, the environment is kept" '[ $RC -eq 0 ] && out_is "[h]"'
run env HOST_VAR=h "$HUTCH" exec --cleanenv=false -e "$I" sh -c 'echo "[$HOST_VAR]"'
check "--cleanenv=false -e: the last value wins, the environment is clean" '[ $RC -eq 0 ] && out_is "[]"'
run "$HUTCH" exec --contain=T "$I" sh -c 'ls -A /tmp | wc -l'
check "--contain=T is --contain" '[ $RC -eq 0 ] && out_is 0'
run "$HUTCH" exec --cleanenv=maybe "$I" true
check "--cleanenv=maybe: status 1, one line naming the flag" 'usage_fails_with "--cleanenv=maybe: --cleanenv takes true or false"'
run "$HUTCH" exec --bogus=1 "$I" true
check "an unknown --option=VALUE is named as given" 'usage_fails_with "option .--bogus=1. is unknown"'
run "$HUTCH" exec --cleanenv=true -Zc "$I" true
check "a bad letter in a cluster after --FLAG=VALUE is named itself (not the flag before it)" 'usage_fails_with "option .-Z. is unknown"'
run env APPTAINER_PWD=/srv "$HUTCH" exec "$I" pwd
check "APPTAINER_PWD is --pwd" 'out_is /srv'
run env APPTAINER_PWD=/srv "$HUTCH" exec --pwd /etc "$I" pwd
check "--pwd on the command line wins over APPTAINER_PWD" 'out_is /etc'
run env SINGULARITY_PWD=/tmp APPTAINER_PWD=/srv HUTCH_PWD=/etc "$HUTCH" exec "$I" pwd
check "HUTCH_PWD wins over APPTAINER_PWD and SINGULARITY_PWD" 'out_is /etc'
run env SINGULARITY_PWD=/tmp APPTAINER_PWD=/srv "$HUTCH" exec "$I" pwd
check "APPTAINER_PWD wins over SINGULARITY_PWD" 'out_is /srv'
run "$HUTCH" exec "$I" sh -c 'ls -a "$HOME" 2>&1 | wc -l'
with_home=$(cat "$OUT")
run "$HUTCH" exec --no-home "$I" sh -c 'ls -a "$HOME" 2>&1 | wc -l'
no_home=$(cat "$OUT")
run env APPTAINER_NO_HOME=1 "$HUTCH" exec "$I" sh -c 'ls -a "$HOME" 2>&1 | wc -l'
check "APPTAINER_NO_HOME=1 is --no-home" 'out_is "$no_home" && [ "$no_home" != "$with_home" ]'
run env APPTAINER_CONTAIN=1 "$HUTCH" exec "$I" sh -c 'ls /tmp | wc -l'
check "APPTAINER_CONTAIN=1 is --contain (empty /tmp)" 'out_is 0'
run env APPTAINER_CONTAINALL=true "$HUTCH" exec "$I" sh -c 'echo $$'
check "APPTAINER_CONTAINALL=true is --containall (own PID namespace)" '[ "$(cat "$OUT")" -le 2 ]'
run env APPTAINER_WRITABLE_TMPFS=1 "$HUTCH" exec "$IMAGES/rootfs" sh -c 'echo x > /etc/wt && cat /etc/wt'
check "APPTAINER_WRITABLE_TMPFS=1 is --writable-tmpfs" 'out_is x && [ ! -e "$IMAGES/rootfs/etc/wt" ]'
mkdir -p "$T/b1" "$T/b2" && echo one > "$T/b1/f" && echo two > "$T/b2/f"
run env APPTAINER_BIND="$T/b1:/b1, $T/b2:/b2" "$HUTCH" exec "$I" cat /b1/f /b2/f
check "APPTAINER_BIND takes a comma list" 'out_is "one
two"'
run env APPTAINER_BIND="$T/b1:/b1" "$HUTCH" exec -B "$T/b2:/b2" "$I" cat /b1/f /b2/f
check "APPTAINER_BIND adds to --bind (as Apptainer)" 'out_is "one
two"'
run env APPTAINER_CPUS=nan "$HUTCH" exec "$I" true
check "a bad value from APPTAINER_CPUS names the variable" 'fails_with "APPTAINER_CPUS"'
run env APPTAINER_HELP=1 HUTCH_DEBUG=1 "$HUTCH" exec "$I" echo ok
check "--help and the logging flags are not read from the environment" 'out_is ok && [ ! -s "$ERR" ]'
leftovers "options from the environment"
finish
