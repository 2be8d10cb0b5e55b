# Crafted images (tests/helpers/craft.py: superblock fields, metadata blocks, directory
# entries, block lists an attacker would set) through exec, inspect and instance start, as
# squashfs and as SIF. Those broken at open: one line 'hutch: error: ... corrupt ...' (or
# truncated, unsupported), status 255. Those broken deeper: the container sees EIO where it
# reads them, and no image server dies ("Transport endpoint is not connected"). Always:
# no sanitizer report from any hutch process (an ASan build serves from hutch itself), no
# hang, nothing left behind.
. "$(dirname "$0")/lib.sh"
trap '"$HUTCH" instance stop --all --force >/dev/null 2>&1; rm -rf "$T"' EXIT
craft=$(dirname "$0")/craft.py
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$T/asan
export UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$T/ubsan
# uncompressed metadata and data: the structures craft.py patches beyond the superblock
mksquashfs "$IMAGES/rootfs" "$T/raw.sqfs" -noappend -quiet -no-progress -all-root -noI -noD -noF -noX >/dev/null
python3 "$craft" sif "$T/raw.sqfs" "$T/raw.sif"
# one folder per source image: raw-sqfs, raw-sif, image-sif (compressed: superblock cases)
for src in "$T/raw.sqfs" "$T/raw.sif" "$IMAGES/image.sif"; do
	d=$T/img/$(basename "$src" | tr . -)
	mkdir -p "$d"
	python3 "$craft" cases "$src" "$d" 2>/dev/null
done
# the cases below are only as good as their images: craft.py must have made them all
made=$(ls "$T"/img/*/* 2>/dev/null | wc -l)
check "craft.py made the crafted images ($made)" '[ "$made" -ge 20 ]'

no_report() { ! ls "$T"/asan* "$T"/ubsan* >/dev/null 2>&1; }
server_alive() { ! grep -qE 'Transport endpoint is not connected|Software caused connection abort' "$OUT" "$ERR"; }
refused() { fails_with "corrupt\|truncated\|unsupported"; }
# a command that finishes (success or a clear failure) and did not lose its server
served() { [ "$RC" -ne 124 ] && server_alive && { [ "$RC" -ne 255 ] || fails_with ""; }; }
# an instance whose container dies of what it read: the start says so, ending in one error line
start_ended() { [ "$RC" -ne 124 ] && server_alive && tail -1 "$ERR" | grep -q '^hutch: error: '; }

while read -r name kind; do
	for f in "$T"/img/*/"$name".s*; do
		[ -e "$f" ] || continue
		c=$(basename "$(dirname "$f")")/$name
		full=0 # every command on the squashfs; exec alone on the SIFs (the same reads after sif_load)
		case $c in raw-sqfs/*) full=1 ;; esac
		if [ "$kind" = open ]; then
			run timeout 60 "$HUTCH" exec "$f" true
			check "$c: exec refuses it" 'refused && no_report'
			[ $full = 1 ] || { leftovers "$c"; continue; }
			run timeout 60 "$HUTCH" inspect "$f"
			check "$c: inspect refuses it" 'refused && no_report'
			run timeout 60 "$HUTCH" instance start "$f" crafted
			check "$c: instance start refuses it" 'refused && no_report'
		else
			run timeout 60 "$HUTCH" exec "$f" /bin/busybox sh -c \
				'cat /bin/busybox /etc/passwd >/dev/null; ls -R / >/dev/null; echo done'
			check "$c: exec ends, its server alive" 'served && no_report'
			[ $full = 1 ] || { leftovers "$c"; continue; }
			run timeout 60 "$HUTCH" inspect "$f"
			check "$c: inspect ends" 'served && no_report'
			run timeout 60 "$HUTCH" instance start "$f" crafted
			if [ "$RC" -eq 0 ]; then
				run timeout 60 "$HUTCH" exec instance://crafted /bin/busybox ls -R /
				check "$c: an instance's server alive" 'served && no_report'
				run timeout 60 "$HUTCH" instance stop crafted
				check "$c: the instance stops" '[ "$RC" -eq 0 ] && no_report'
			else
				check "$c: instance start ends" 'start_ended && no_report'
			fi
		fi
		leftovers "$c"
	done
done < <(python3 "$craft" list)
finish
