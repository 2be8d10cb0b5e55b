# Bootstrap: yum/dnf and zypper from a local rpm-md repository the test makes (rpmbuild a
# tiny noarch package carrying a static busybox, createrepo_c): the host's dnf --installroot
# and zypper --root, as root and as a user (the build's user namespace, --fakeroot).
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
no_build_leftovers() { [ -z "$(ls -d "$T"/*.hutch-build-* "$T"/*.hutch-tmp-* 2>/dev/null)" ]; }

if ! command -v rpmbuild >/dev/null || ! command -v createrepo_c >/dev/null || ! command -v dnf >/dev/null; then
	notok "rpmbuild, createrepo_c and dnf are installed (packages rpm, createrepo-c, dnf; see dev.sh)"
	finish
fi

# hutchbase: busybox as /bin/busybox and /bin/sh, /etc/redhat-release; it provides what the
# agents add to every install (coreutils for yum, aaa_base for zypper). hutchhello: a file.
mkspec() { # NAME PROVIDES INSTALL FILES
	cat > "$T/$1.spec" <<EOF
Name: $1
Version: 1.0
Release: 1
Summary: a tiny package for hutch's tests
License: GPL-2.0-only
BuildArch: noarch
AutoReqProv: no
$2
%description
A tiny package for hutch's tests.
%install
$3
%files
$4
EOF
}
mkspec hutchbase "Provides: coreutils aaa_base" 'mkdir -p %{buildroot}/bin %{buildroot}/etc
cp /bin/busybox %{buildroot}/bin/busybox
ln -s busybox %{buildroot}/bin/sh
echo "hutch test release" > %{buildroot}/etc/redhat-release' '/bin/busybox
/bin/sh
/etc/redhat-release'
mkspec hutchhello "Requires: hutchbase" 'mkdir -p %{buildroot}/usr/share/hutchhello
echo "hello from an rpm" > %{buildroot}/usr/share/hutchhello/hello.txt' '/usr/share/hutchhello/hello.txt'
mkdir -p "$T/el1/repo"
for p in hutchbase hutchhello; do
	# (HOME: rpmbuild makes ~/.rpmdb)
	HOME=$T rpmbuild --quiet -bb --define "_topdir $T/rpm" --define "_build_id_links none" --define "__os_install_post %{nil}" \
		--define "_binaries_in_noarch_packages_terminate_build 0" "$T/$p.spec" >"$T/rpmbuild.log" 2>&1 ||
		{ notok "rpmbuild of $p"; cat "$T/rpmbuild.log" | sed 's/^/#   /'; finish; }
done
cp "$T"/rpm/RPMS/noarch/*.rpm "$T/el1/repo/"
createrepo_c -q "$T/el1/repo" || { notok "createrepo_c"; finish; }

cat > "$T/yum.def" <<EOF
Bootstrap: yum
OSVersion: el1
MirrorURL: file://$T/%{OSVERSION}/repo
Include: hutchhello

%post
    echo "post in \$(cat /etc/redhat-release)" > /post.txt

%runscript
    cat /usr/share/hutchhello/hello.txt /post.txt
EOF
run "$HUTCH" build "$T/yum.sif" "$T/yum.def"
check "Bootstrap: yum from a file:// repository (MirrorURL with %{OSVERSION}, Include)" '[ $RC -eq 0 ] && [ -f "$T/yum.sif" ] && no_build_leftovers && err_has "Running dnf into the rootfs from file://$T/el1/repo"'
run "$HUTCH" run "$T/yum.sif"
check "the yum-built image runs: Include's package installed, %post ran in it" 'out_is "hello from an rpm
post in hutch test release"'
run "$HUTCH" exec --contain "$T/yum.sif" sh -c 'ls /var/lib/rpm; ls -d /var/cache/yum-bootstrap /root/.rpmdb 2>&1'
check "the rpm database is in /var/lib/rpm, the package cache is not in the image" 'out_has "^rpmdb.sqlite$" && out_has "yum-bootstrap.*No such file" && out_has "rpmdb.*No such file"'

# Bootstrap: dnf is the same agent; UpdateURL a second repository; a sandbox
printf 'Bootstrap: dnf\nMirrorURL: file://%s/el1/repo\nUpdateURL: file://%s/el1/repo\n' "$T" "$T" > "$T/dnf.def"
run "$HUTCH" build -q --sandbox "$T/dnf.box" "$T/dnf.def"
check "Bootstrap: dnf with UpdateURL into a sandbox" '[ $RC -eq 0 ] && [ -x "$T/dnf.box/bin/busybox" ] && [ ! -e "$T/dnf.box/usr/share/hutchhello" ] && no_build_leftovers'
rm -rf "$T/dnf.box"

# GPG: a repository whose packages are signed (rpmsign) with the key named: the key is
# imported into the image's rpm database and every package checked; an unsigned repository,
# or packages signed by another key, fail the build
export GNUPGHOME=$T/gnupg
mkdir -m 0700 "$GNUPGHOME"
cleanup_gpg() { gpgconf --homedir "$T/gnupg" --kill gpg-agent 2>/dev/null; }
trap 'cleanup_gpg; rm -rf "$T"' EXIT
if command -v gpg >/dev/null && command -v rpmsign >/dev/null &&
	gpg --batch --pinentry-mode loopback --passphrase '' --quick-gen-key 'hutch signer <signer@hutch.test>' rsa2048 sign 1d 2>/dev/null &&
	gpg --batch --pinentry-mode loopback --passphrase '' --quick-gen-key 'hutch other <other@hutch.test>' rsa2048 sign 1d 2>/dev/null; then
	gpg --armor --export signer@hutch.test > "$T/RPM-GPG-KEY-signer"
	gpg --armor --export other@hutch.test > "$T/RPM-GPG-KEY-other"
	mkdir -p "$T/el2/repo"
	cp "$T"/el1/repo/*.rpm "$T/el2/repo/"
	rpmsign --define "__gpg $(command -v gpg)" --define "_gpg_name signer@hutch.test" --define "_gpg_path $GNUPGHOME" --addsign "$T"/el2/repo/*.rpm >"$T/rpmsign.log" 2>&1 &&
		createrepo_c -q "$T/el2/repo" || { notok "rpmsign and createrepo_c of a signed repository"; sed 's/^/#   /' "$T/rpmsign.log"; }
	printf 'Bootstrap: yum\nMirrorURL: file://%s/el2/repo\nGPG: %s\nInclude: hutchhello\n' "$T" "$T/RPM-GPG-KEY-signer" > "$T/gpg.def"
	run "$HUTCH" build -q --sandbox "$T/gpg.box" "$T/gpg.def"
	check "Bootstrap: yum with GPG: signed packages pass, the key is in the image's rpm database" '[ $RC -eq 0 ] && [ -f "$T/gpg.box/usr/share/hutchhello/hello.txt" ] && rpm --root "$T/gpg.box" --dbpath /var/lib/rpm -q gpg-pubkey --qf "%{SUMMARY}\n" | grep -q "signer@hutch.test" && no_build_leftovers'
	rm -rf "$T/gpg.box"
	printf 'Bootstrap: yum\nMirrorURL: file://%s/el1/repo\nGPG: %s\nInclude: hutchhello\n' "$T" "$T/RPM-GPG-KEY-signer" > "$T/gpg2.def"
	run "$HUTCH" build -q "$T/bad.sif" "$T/gpg2.def"
	check "Bootstrap: yum with GPG from a repository of unsigned packages: the build fails, nothing left" '[ $RC -eq 255 ] && grep -q "^hutch: error: .*Bootstrap: yum: dnf failed" "$ERR" && [ ! -e "$T/bad.sif" ] && no_build_leftovers'
	printf 'Bootstrap: yum\nMirrorURL: file://%s/el2/repo\nGPG: %s\nInclude: hutchhello\n' "$T" "$T/RPM-GPG-KEY-other" > "$T/gpg3.def"
	run "$HUTCH" build -q "$T/bad.sif" "$T/gpg3.def"
	check "Bootstrap: yum with GPG naming another key than the packages' signer: the build fails, nothing left" '[ $RC -eq 255 ] && grep -q "^hutch: error: .*Bootstrap: yum: dnf failed" "$ERR" && [ ! -e "$T/bad.sif" ] && no_build_leftovers'
	cleanup_gpg
	rm -f "$T/bad.sif"
else
	notok "gpg makes a signing key and rpmsign is installed (packages gnupg, rpm; see dev.sh)"
fi

# bad headers: one line, nothing made
printf 'Bootstrap: yum\nMirrorURL: file://%s/nosuch\n' "$T" > "$T/bad1.def"
run "$HUTCH" build -q "$T/bad.sif" "$T/bad1.def"
check "Bootstrap: yum with a MirrorURL that is no repository: one line, nothing left" 'fails_with "MirrorURL: .file://$T/nosuch. is no rpm-md repository" && [ ! -e "$T/bad.sif" ] && no_build_leftovers'
printf 'Bootstrap: yum\nMirrorURL: gopher://example.org/repo\n' > "$T/bad2.def"
run "$HUTCH" build -q "$T/bad.sif" "$T/bad2.def"
check "Bootstrap: yum with a MirrorURL of another scheme" 'fails_with "is not an http://, https://, ftp:// or file:// URL" && [ ! -e "$T/bad.sif" ]'
printf 'Bootstrap: yum\nOSVersion: 9\n' > "$T/bad3.def"
run "$HUTCH" build -q "$T/bad.sif" "$T/bad3.def"
check "Bootstrap: yum without MirrorURL" "fails_with \"Bootstrap: yum needs 'MirrorURL: URL'\" && [ ! -e \"\$T/bad.sif\" ]"
printf 'Bootstrap: yum\nMirrorURL: file://%s/%%{osversion}/repo\n' "$T" > "$T/bad4.def"
run "$HUTCH" build -q "$T/bad.sif" "$T/bad4.def"
check "Bootstrap: yum: %{OSVERSION} in MirrorURL without OSVersion" "fails_with \"uses %{OSVERSION} but there is no 'OSVersion:'\" && [ ! -e \"\$T/bad.sif\" ]"
printf 'Bootstrap: yum\nMirrorURL: file://%s/el1/repo\nGPG: http://example.org/key\n' "$T" > "$T/bad5.def"
run "$HUTCH" build -q "$T/bad.sif" "$T/bad5.def"
check "Bootstrap: yum: a GPG key over plain http" "fails_with \"GPG: 'http://example.org/key' is neither an https:// URL nor an absolute path\""
# a package the repository lacks: dnf says which; the build fails naming dnf, nothing left
printf 'Bootstrap: yum\nMirrorURL: file://%s/el1/repo\nInclude: nosuchpackage\n' "$T" > "$T/bad6.def"
run "$HUTCH" build -q "$T/bad.sif" "$T/bad6.def"
check "Bootstrap: yum of a package the repository lacks: dnf's error, no target, no build folder" '[ $RC -eq 255 ] && grep -q "^hutch: error: .*Bootstrap: yum: dnf failed (exit status 1)" "$ERR" && err_has nosuchpackage && [ ! -e "$T/bad.sif" ] && no_build_leftovers'

# zypper from the same repository
if command -v zypper >/dev/null; then
	printf 'Bootstrap: zypper\nMirrorURL: file://%s/el1/repo\nInclude: hutchhello\n%%runscript\n    cat /usr/share/hutchhello/hello.txt\n' "$T" > "$T/zyp.def"
	run "$HUTCH" build -q "$T/zyp.sif" "$T/zyp.def"
	check "Bootstrap: zypper from a file:// repository" '[ $RC -eq 0 ] && no_build_leftovers'
	run "$HUTCH" run "$T/zyp.sif"
	check "the zypper-built image runs with Include's package" 'out_is "hello from an rpm"'
	run "$HUTCH" exec --contain "$T/zyp.sif" sh -c 'ls /var/lib/rpm; ls -d /var/cache/zypp 2>&1'
	check "zypper: the rpm database in /var/lib/rpm, no package cache in the image" 'out_has "^rpmdb.sqlite$" && out_has "zypp.*No such file"'
	printf 'Bootstrap: zypper\nMirrorURL: file://%s/nosuch\n' "$T" > "$T/bad7.def"
	run "$HUTCH" build -q "$T/bad.sif" "$T/bad7.def"
	check "Bootstrap: zypper with a MirrorURL that is no repository: one line" 'fails_with "is no rpm-md repository" && no_build_leftovers'
fi
leftovers "t-yum"
finish
