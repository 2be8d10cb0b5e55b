/* Help texts: `hutch help [VERB]` and `hutch VERB --help`. Kept beside the parsers they
 * describe; docs/hutch.1.md says the same in more words. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util/util.h"

static const char launch_options[] =
        "Options:\n"
        "  -B, --bind SRC[:DST[:ro|rw]]  bind a host path (repeatable, comma lists; HUTCH_BIND)\n"
        "      --mount type=bind,src=S,dst=D[,ro]\n"
        "      --no-mount NAMES          skip default mounts: home,cwd,tmp,proc,sys,dev,devpts,\n"
        "                                bind-paths,hostfs,/etc/hosts,/etc/resolv.conf,/etc/passwd,/etc/group,\n"
        "                                or a 'bind path' destination; other names: a warning\n"
        "  -c, --contain                 minimal /dev, empty /tmp, /var/tmp and $HOME, no cwd mount\n"
        "  -C, --containall              --contain plus --pid, --ipc and --cleanenv\n"
        "  -e, --cleanenv                do not pass the host environment\n"
        "      --env K=V[,K=V]           set a variable inside (wins over the image's %environment;\n"
        "                                V is evaluated inside: --env 'PATH=$PATH:/x')\n"
        "      --env-file FILE           KEY=VALUE lines to set inside ($NAME expanded)\n"
        "      --no-eval                 set --env and *ENV_ values as they are, unevaluated\n"
        "  -H, --home SRC[:DST]          home folder to mount (default: $HOME at the same path)\n"
        "      --no-home                 do not mount the home folder\n"
        "      --pwd DIR, --cwd DIR      working folder inside\n"
        "  -W, --workdir DIR             with --contain: host folder for /tmp, /var/tmp and $HOME\n"
        "  -p, --pid                     new PID namespace (a minimal init is PID 1)\n"
        "      --no-init                 with --pid: the payload itself is PID 1\n"
        "  -i, --ipc                     new IPC namespace\n"
        "      --uts                     new UTS namespace\n"
        "      --hostname NAME           new UTS namespace with this hostname\n"
        "  -w, --writable                write to a sandbox folder image, or into a SIF's overlay partition\n"
        "      --writable-tmpfs          writable root; changes are lost at exit (at most\n"
        "                                'sessiondir max size' of hutch.conf, default 64 MiB)\n"
        "  -o, --overlay PATH[:ro|:rw]   persistent overlay: a folder, an ext3 image or a SIF's overlay\n"
        "                                partition (as a user served by hutch-ext3);\n"
        "                                repeatable, comma lists; the last writable one keeps the\n"
        "                                changes, in PATH/upper\n"
        "  -f, --fakeroot                uid/gid 0 inside (subordinate ids from /etc/subuid when granted)\n"
        "  -s, --shell PATH              shell for 'shell' (default /bin/bash --norc, else /bin/sh)\n"
        "      --security seccomp:FILE|seccomp:default|uid:N|gid:N\n"
        "                                a seccomp profile (OCI/Docker JSON) or the built-in one, applied\n"
        "                                last before the exec; uid:/gid: run as those ids (root only)\n"
        "      --no-privs                drop every capability (root, --fakeroot; users have none)\n"
        "      --add-caps CAPS           with --no-privs: keep these (root, --fakeroot)\n"
        "      --drop-caps CAPS          drop these (CAP_NET_RAW,sys_admin,...)\n"
        "      --keep-privs              keep every capability (root, --fakeroot; the default there)\n"
        "      --allow-setuid            setuid files of the image work: no nosuid, no no_new_privs (root)\n"
        "      --app NAME                a SCIF app of the image: its runscript/test/startscript, env, bin/\n"
        "  -S, --scratch DIR[,DIR]       a writable folder at DIR: WORKDIR/scratch/DIR with --workdir,\n"
        "                                else a fresh one, gone at exit\n"
        "      --no-umask                start the payload with umask 0022, not yours\n"
        "      --compat                  --containall --no-init --no-umask --no-eval --writable-tmpfs\n"
        "      --ignore-subuid           with --fakeroot: map 0 to you alone, not your /etc/subuid range\n"
        "      --nv, --nvccli / --rocm   bind this host's NVIDIA / AMD GPU driver (libraries into\n"
        "                                /.singularity.d/libs, programs, devices); a warning without one;\n"
        "                                --no-nv / --no-rocm: not\n"
        "      --underlay, --ignore-userns, --ignore-fakeroot-command  accepted, nothing to do\n"
        "      --unsquash                accepted: hutch serves SquashFS itself, nothing to unpack\n"
        "      --no-https                a registry IMAGE over plain HTTP\n"
        "      --disable-cache           a registry IMAGE is pulled into a temporary folder ($HUTCH_TMPDIR,\n"
        "                                $APPTAINER_TMPDIR, $TMPDIR or /tmp), not the cache, and removed\n"
        "                                once open (not for instance start); nothing to do for a local one\n"
        "      --debug / --verbose / --quiet / --silent  logging (-d -v -q -s before the verb; after it,\n"
        "                                -s is --shell)\n"
        "Limits (a cgroup beneath yours; as a user where yours cannot take them, exec|run|shell|test\n"
        "run through a transient hutch-run-*.service of your systemd user manager, --systemd below):\n"
        "      --cpus N, --cpu-shares N, --cpuset-cpus LIST, --cpuset-mems LIST\n"
        "      --memory SIZE, --memory-reservation SIZE, --memory-swap SIZE|-1, --oom-kill-disable\n"
        "      --pids-limit N, --blkio-weight N, --blkio-weight-device DEV:W\n"
        "      --device-read-bps|--device-write-bps DEV:SIZE, --device-read-iops|--device-write-iops DEV:N\n"
        "      --apply-cgroups FILE      Apptainer's cgroups TOML (flags win over it)\n"
        "      --cgroup-parent PATH      create the cgroup beneath PATH (a delegated, empty cgroup)\n"
        "      --systemd auto|yes|no     exec|run|shell|test with limits through the manager: always (yes),\n"
        "                                never (no), or (auto; hutch.conf 'systemd') where your cgroup\n"
        "                                cannot take them, outside batch jobs and without a cgroup parent\n"
        "Networks (default: the host's; --net: a namespace of its own):\n"
        "  -n, --net                     own network namespace (hutch.conf 'network default', else none)\n"
        "      --network NAME[,NAME...]  none (lo only), pasta, slirp4netns, bridge (root) or a named\n"
        "                                network of /etc/hutch/network; implies --net; a list of bridge\n"
        "                                networks: eth0, eth1, ... in order (route, ports: the first)\n"
        "      --publish [IP:]HPORT:PORT[/tcp|/udp]  publish a port on the host (IP default 127.0.0.1;\n"
        "                                implies --net, pasta by default); also -p when a mapping follows\n"
        "      --network-args portmap=HPORT:PORT/tcp  Apptainer's spelling of --publish\n"
        "      --dns IP[,IP]             the container's resolv.conf\n"
        "      --add-host NAME:IP        a line of the container's /etc/hosts\n"
        "\n"
        "Environment: HUTCHENV_K=V (or APPTAINERENV_K=V) sets K inside; every option also as\n"
        "HUTCH_<OPTION>, APPTAINER_<OPTION> or SINGULARITY_<OPTION> (APPTAINER_CLEANENV=1,\n"
        "APPTAINER_BIND=...; the command line wins); HUTCH_CONF names your own configuration file\n"
        "(default ~/.hutch/hutch.conf), which can only tighten the system's (see 'hutch help').\n"
        "Exit status: the payload's own; 255 when hutch itself fails; 128+N when killed by signal N.\n";

static const struct {
        const char *verb, *usage, *what;
} verbs[] = {
        {"exec", "hutch exec [options] IMAGE COMMAND [ARGS...]", "Run a command in a container."},
        {"run", "hutch run [options] IMAGE [ARGS...]",
         "Run the image's runscript (/.singularity.d/runscript), else /bin/sh, with ARGS."},
        {"shell", "hutch shell [options] IMAGE", "Start an interactive shell (prompt \"Hutch> \")."},
        {"test", "hutch test [options] IMAGE", "Run the image's test script (/.singularity.d/test)."},
        {"instance",
         "hutch instance start|run [options] [--restart no|on-failure[:N]|always] IMAGE NAME [ARGS...]\n"
         "       hutch instance list [--json] [--logs] [--all] [--user U] [NAME-GLOB]\n"
         "       hutch instance stop [--all] [--signal SIG] [--timeout S] [--force] [--user U] [NAME-GLOB]\n"
         "       hutch instance logs [-f|--follow] [--tail N] [--err|--out] [--user U] NAME\n"
         "       hutch instance stats [--json] [--no-stream] [--user U] NAME\n"
         "       hutch instance unit [--restart no|on-failure|always] [--wanted-by T] [--install] [options]\n"
         "                           IMAGE NAME [ARGS...]",
         "Long-running containers of the calling user, each kept by one small supervisor process.\n"
         "start runs the image's startscript (/.singularity.d/startscript) with ARGS, run its runscript;\n"
         "either returns once the container runs (or fails, showing its error output). A startscript\n"
         "that exits 0 leaves the instance running, as Apptainer. Every launcher option applies;\n"
         "the instance always has its own PID namespace with a minimal init as PID 1.\n"
         "  --restart POLICY  no (default), on-failure[:N] (N restarts at most), always;\n"
         "                    exponential backoff from 100 ms to 30 s\n"
         "  --tie-to-job[=true|false], --no-tie-to-job  inside a batch job (SLURM_JOB_ID, PBS_JOBID,\n"
         "                    LSB_JOBID set; on by default there) the instance stops when the job's\n"
         "                    script or task ends, whatever the scheduler's process tracking\n"
         "  --systemd auto|yes|no  run the supervisor as unit hutch-NAME.service of your systemd user\n"
         "                    manager (Type=notify, Delegate=yes, limits as unit properties): auto\n"
         "                    (default; hutch.conf 'systemd') where one is reachable, yes or fail\n"
         "  --pid-file FILE   write the instance's pid (as list shows it) to FILE, as Apptainer (a\n"
         "                    Type=forking unit's PIDFile=: that unit keeps the instance, so it\n"
         "                    implies --systemd no; use the unit's Restart=, not --restart)\n"
         "  --ready notify|tcp:PORT|exec:CMD  start returns once the service is ready: it sent\n"
         "                    READY=1 to $NOTIFY_SOCKET (/run/hutch/notify inside), 127.0.0.1:PORT in\n"
         "                    its network accepts, or CMD (by the container's /bin/sh -c, as exec\n"
         "                    instance:// runs it) exits 0, retried; under systemd the unit's READY=1\n"
         "  --ready-timeout S not ready within S seconds (default 60, at most 240), or the service\n"
         "                    exits first: the start fails, shows its error log's end, stops it\n"
         "stats [--json] [--no-stream] NAME: CPU %, memory usage/limit, pids, block I/O.\n"
         "list: NAME, PID (the container's PID 1), IMAGE, STARTED, KEEPER (hutch or systemd), RESTARTS,\n"
         "and JOB for instances started in a batch job; --json in Apptainer's shape (with jobId,\n"
         "keeper, unit, user, limits, imageDigest); --logs the log paths;\n"
         "--all every user's (root), --user U one user's: with USER, LIMITS and DIGEST columns.\n"
         "stop|logs|stats --user U (root only): another user's instance, acted on as that user.\n"
         "stop: SIGINT (as Apptainer; or --signal), SIGKILL after --timeout seconds (default 10),\n"
         "--force at once; "
         "returns when the instance and all it had are gone.\n"
         "logs: stdout (to stdout) and stderr (to stderr) of the instance, from\n"
         "$HOME/.hutch/logs/HOST/NAME.out|.err, rotated at 'instance log max size' (hutch.conf).\n"
         "unit: a systemd user unit file running the instance with these options (Restart= from\n"
         "--restart); --install writes it to ~/.config/systemd/user/, reloads and enables it.\n"
         "Join a running instance with: hutch exec|run|shell instance://NAME ...\n"
         "State: /run/user/UID/hutch/instances/NAME where that folder is yours (whatever\n"
         "XDG_RUNTIME_DIR says), else $HOME/.hutch/instances/HOST/NAME."},
        {"inspect",
         "hutch inspect [--app NAME] "
         "[-l|--labels] [-r|--runscript] [-s|--startscript] [-t|--test] [-d|--deffile] [-e|--environment] "
         "[-H|--helpfile] [--list-apps] [--all] [-j|--json] IMAGE",
         "Show an image's metadata (default: labels), as Apptainer prints it: labels and env scripts\n"
         "in key order; --json as Apptainer's JSON (tab-indented); --all: everything, as JSON."},
        {"run-help", "hutch run-help [--app NAME] IMAGE",
         "Show the image's runscript help (/.singularity.d/runscript.help; an app's with --app)."},
        {"build",
         "hutch build [--sandbox] [--force] [-q] TARGET SOURCE\n"
         "       hutch build [--sandbox] [--force] [--notest] [--fakeroot] [--update] [--section S,...] "
         "[--build-arg K=V]... [--build-arg-file F] [--warn-unused-build-args] [-B|--bind SRC[:DST[:ro]]]... "
         "[--mount SPEC]... [--writable-tmpfs] [--keep-build|--no-cleanup] [--fix-perms] "
         "TARGET "
         "RECIPE.def",
         "Convert between a sandbox folder, a squashfs file and a SIF file, or build from a definition file.\n"
         "TARGET is a SIF file unless --sandbox (a folder) or it ends in .sqfs/.squashfs (a squashfs file).\n"
         "Says what it builds, and the size and time when done; -q: quiet. A sandbox built by a user\n"
         "leaves out device nodes (only root can make them).\n"
         "A definition file (Apptainer's format; Bootstrap: localimage, busybox, scratch, debootstrap,\n"
         "yum/dnf (the host's dnf --installroot), zypper, or docker, docker-archive, oci, oci-archive\n"
         "through hutch-registry; Stage: for multi-stage builds) runs\n"
         "%setup on the host, %files, %post in the container, then writes %environment, %runscript,\n"
         "%startscript, %test, %labels and %help where Apptainer does and runs %test (-T, --notest:\n"
         "not). {{ NAME }} takes --build-arg NAME=VALUE, a --build-arg-file line or its %arguments\n"
         "default; a --build-arg no template uses is an error (--warn-unused-build-args: a warning).\n"
         "Fingerprints: FP[,FP...] (localimage, oras): the source SIF must verify with your\n"
         "keyrings and be signed by every key listed. As a user the build runs as root of a user\n"
         "namespace with your /etc/subuid and /etc/subgid ranges (--fakeroot is implied). A failed\n"
         "build leaves nothing; with --keep-build its folder (a rootfs per stage) stays, named in the error.\n"
         "-u, --update: the last stage goes into TARGET, an existing --sandbox folder, without its\n"
         "bootstrap. --section S,...: run only these (setup, files, post, environment, runscript,\n"
         "startscript, test, labels, help, all, none). -B, --bind SRC[:DST[:ro|rw]] (repeatable,\n"
         "comma-separated lists): a host path in the containers of %post, %appinstall and %test, not\n"
         "in the image; --mount type=bind,src=S,dst=D[,ro] the same. --writable-tmpfs: %test's root is\n"
         "writable, its changes dropped. --fix-perms: the owner gets rwX on every file and folder of\n"
         "the result (a sandbox's, or a definition file's rootfs before it is packed). --userns is\n"
         "accepted (a user's build always has its namespace). --disable-cache: a registry SOURCE is\n"
         "pulled into a temporary folder, not the cache, and removed after the build."},
        {"overlay", "hutch overlay create [-s|--size MiB] [-S|--sparse] [--create-dir DIR]... [-f|--fakeroot] FILE",
         "Create FILE, an ext3 image to use with --overlay: upper/ and work/ belong to you, and each\n"
         "--create-dir DIR is made as upper/DIR. --size: in MiB, at least 64 (the default);\n"
         "--sparse: the file's blocks are allocated as they are written. -f, --fakeroot: those\n"
         "folders belong to uid 0 in the image, root inside a --fakeroot container that mounts it\n"
         "in its user namespace (as Apptainer's); the file stays yours. When FILE is a SIF file the\n"
         "image becomes its overlay partition (not of a signed SIF, whose signatures would no longer\n"
         "cover it). The file is made 0600."},
        {"sif", "hutch sif list|header|info ID|dump ID IMAGE.sif",
         "List a SIF file's objects, show its header, describe one object, or write one's data to\n"
         "stdout, printed as Apptainer's 'sif' (the reference siftool) prints them."},
        {"cache", "hutch cache list [-T|--type T,...] | clean [-T|--type T,...] [-D|--days N] [-f|--force]",
         "Show or empty your caches: the registry cache (blob: layers; sif, or Apptainer's oci, oras,\n"
         "library, shub, net: the SIFs made from them) and the cache of decompressed image files\n"
         "(file); -T all (the default) is both. --days N: only entries older than N days.\n"
         "Files of at least one block (128 KiB) that a container opens from a squashfs or SIF image,\n"
         "and the blocks that pack small files, are kept decompressed, so that the next start of the\n"
         "same image need not inflate them again: in $XDG_RUNTIME_DIR/hutch/cache, else\n"
         "/dev/shm/hutch-UID/cache (tmpfs, so memory), least recently used first out beyond\n"
         "'file cache size' in hutch.conf (default 128M; 0: no cache). An entry is named after the\n"
         "image file's device, inode, size and times, so a changed image never meets an old entry.\n"
         "list: how many entries, their size, the folder; clean: removes them all (-f is accepted)."},
        {"key",
         "hutch key newpair|list|import FILE|export [--armor] [--secret] [FINGERPRINT] FILE|remove [--secret] "
         "FINGERPRINT|search [--url U] QUERY|pull [--url U] FINGERPRINT|push [--url U] FINGERPRINT",
         "Manage your OpenPGP keys: ~/.hutch/keys/pgp-public and pgp-secret (HUTCH_KEYSDIR), the layout\n"
         "of Apptainer's ~/.apptainer/keys, which is read too (APPTAINER_KEYSDIR).\n"
         "newpair -N|--name N [-E|--email E] [-C|--comment C] [-b|--bit-length 4096] [-P|--password P]\n"
         "[-U|--push[=true|false]]: an RSA key pair, with passphrase P when given (else asked, as\n"
         "below) (--push: then pushed to the keyserver, as 'key push').\n"
         "list [--secret]; import FILE (armored or binary, public or secret); export to FILE (- for\n"
         "stdout; the only key unless a FINGERPRINT is given); remove from the public keyring, or the\n"
         "secret one with --secret. Passphrases: HUTCH_SIGN_PASSPHRASE, --passphrase-file FILE, or asked\n"
         "on the terminal without echo (empty: no protection).\n"
         "search, pull, push: HKP to the keyserver --url names (hkp://, hkps://, http://, https://), else\n"
         "to the first of 'hutch keyserver list'; without either, 'no network keyserver configured'.\n"
         "search: the keys whose user id or key id match QUERY (fingerprint, bits, creation, user ids);\n"
         "pull: that key into the public keyring, only when the keyserver sent exactly it; push: a key\n"
         "of your public keyring."},
        {"keyserver", "hutch keyserver add [--insecure] URL|remove URL|list",
         "The keyservers 'key search|pull|push' use, yours alone (~/.hutch/keyservers): the first added\n"
         "is used. URL: hkps://HOST, https://HOST[:PORT][/PATH], or plain HTTP (hkp://HOST, port 11371\n"
         "by default, or http://...), which needs --insecure."},
        {"sign", "hutch sign [--keyidx N] [--sif-id ID | --group-id ID] [--passphrase-file F] IMAGE.sif",
         "Sign a SIF image as Apptainer 1.1+ does: for each object group (or the one given), a\n"
         "clear-signed list of the header's and objects' SHA-256 digests, appended as a signature\n"
         "object. --keyidx: which secret key ('hutch key list --secret'), needed when there are several."},
        {"verify",
         "hutch verify [--sif-id ID | --group-id ID] [--legacy-insecure [--all]] [-l|--local] [--json] IMAGE.sif",
         "Verify a SIF image's signatures with your keyring: each signer's name and fingerprint\n"
         "([LOCAL]: from the keyring) and the objects verified. Fails (status 255) in one line in\n"
         "Apptainer's words, 'Failed to verify container: integrity: ...', when the image is unsigned\n"
         "('signature not found for object group N'), a signer is unknown ('signature made by unknown\n"
         "entity'), a signature is bad or an object changed after signing ('integrity compromised').\n"
         "--json: Apptainer's JSON on stdout, also on failure: {\"Signatures\": N, \"SignerKeys\":\n"
         "[{\"Signer\": {\"Partition\", \"Name\", \"Fingerprint\", \"KeyLocal\", \"KeyCheck\",\n"
         "\"DataCheck\"}}, ...] or null}, an entry per object verified.\n"
         "Legacy (Singularity < 3.6) signatures only with --legacy-insecure; with --all, each object's."},
        {"pull",
         "hutch pull [--force] [--dir DIR] [--arch ARCH] [--disable-cache] [--no-https] [OUTPUT.sif | --name "
         "OUTPUT.sif] URI",
         "Pull an image from a registry into a SIF file (default name, as Apptainer's: REPO_TAG.sif; for a\n"
         "local source its last path part, extension and all: x.tar_latest.sif, DIR_TAG.sif).\n"
         "URI: docker://[HOST[:PORT]/]REPO[:TAG|@sha256:HEX] (Docker Hub without HOST), or\n"
         "oras://HOST/REPO:TAG (a SIF pushed as an ORAS artifact, pulled byte for byte), or\n"
         "oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, or docker-daemon:IMAGE[:TAG] (the\n"
         "image exported by the Docker Engine API at $DOCKER_HOST, unix:///PATH or tcp://HOST:PORT,\n"
         "default unix:///var/run/docker.sock: Docker, or podman's 'system service').\n"
         "library:// and shub:// are not supported.\n"
         "A docker image becomes a squashfs SIF with Apptainer's /.singularity.d metadata: the\n"
         "config's Env, ENTRYPOINT/CMD as the runscript, WorkingDir, labels. Blobs are verified\n"
         "against their digests and kept in $HUTCH_CACHEDIR (default ~/.hutch/cache): blob/ and\n"
         "oci-tmp/ (the SIFs); exec|run|shell|test|instance start take these URIs and run the\n"
         "cache's copy.\n"
         "  --arch ARCH      an index's entry for ARCH (amd64, arm64[/v8], ...; default: this host's)\n"
         "  --no-https       plain HTTP (also HUTCH_NOHTTPS=1 or APPTAINER_NOHTTPS=1)\n"
         "  --disable-cache  neither read nor fill the cache\n"
         "Credentials: HUTCH_DOCKER_USERNAME/PASSWORD (or APPTAINER_DOCKER_*), else 'hutch remote\n"
         "login', ~/.docker/config.json, podman's auth.json. TLS: the system CAs, or SSL_CERT_FILE.\n"
         "Per registry: podman's registries.conf ($CONTAINERS_REGISTRIES_CONF, else the user's or\n"
         "/etc/containers/, and registries.conf.d/): insecure = true is TLS unverified, plain HTTP\n"
         "if TLS fails; blocked = true is refused.\n"
         "Proxies: http_proxy, https_proxy, no_proxy. Progress: a bar per blob on a terminal, one\n"
         "line per blob off a terminal; -q: silent."},
        {"push", "hutch push [--no-https] IMAGE.sif oras://HOST/REPO:TAG",
         "Push a SIF file as an ORAS artifact, with the media types Apptainer uses\n"
         "(application/vnd.sylabs.sif.layer.v1.sif), so that Apptainer and hutch pull it back.\n"
         "registries.conf's insecure and blocked registries apply as for pull."},
        {"remote",
         "hutch remote login [--username U] [--password-stdin] [--no-https] docker://HOST\n"
         "       hutch remote logout docker://HOST",
         "Store (after checking them with the registry) or forget credentials for a registry,\n"
         "in ~/.hutch/docker-config.json (Docker's format, mode 0600). Without --password-stdin the\n"
         "password is asked for on the terminal. A registry insecure in podman's registries.conf\n"
         "is reached as by pull (TLS unverified, plain HTTP if TLS fails)."},
        {"version", "hutch version", "Print the version."},
        {"help", "hutch help [VERB]", "Show help."},
};

bool cli_help_has(const char *verb)
{
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (!strcmp(verb, verbs[i].verb))
                        return true;
        return false;
}

/* A verb's one line in 'hutch help': a whole sentence, not its help's first line cut short. */
static const char *summary(const char *verb, const char *what)
{
        static const char *const lines[][2] = {
                {"instance", "Long-running containers of the calling user: start, list, stop, logs, stats, unit."},
                {"inspect", "Show an image's metadata (default: labels), as Apptainer prints it."},
                {"build", "Build an image from a definition file, or convert between SIF, squashfs and folders."},
                {"overlay", "Create an ext3 overlay image, or add an overlay partition to a SIF file."},
                {"sif", "List, describe or dump the objects of a SIF file, or show its header."},
                {"cache", "Show or empty your registry cache and your cache of decompressed files."},
                {"key", "Manage your OpenPGP keys (Apptainer's keyring layout)."},
                {"keyserver", "Choose the keyservers 'key search|pull|push' use."},
                {"sign", "Sign a SIF image as Apptainer 1.1+ does."},
                {"verify", "Verify a SIF image's signatures with your keyrings."},
                {"pull", "Pull an image from a registry or a local OCI/Docker source into a SIF file."},
                {"push", "Push a SIF file to an OCI registry as an ORAS artifact."},
                {"remote", "Log in to or out of a registry (credentials checked, then stored)."},
        };
        for (size_t i = 0; i < ELEMENTSOF(lines); i++)
                if (!strcmp(verb, lines[i][0]))
                        return lines[i][1];
        return what; /* the others' help starts with a line of its own: that line */
}

void cli_help_print(const char *verb)
{
        for (size_t i = 0; verb && i < ELEMENTSOF(verbs); i++)
                if (!strcmp(verb, verbs[i].verb)) {
                        printf("Usage: %s\n\n%s\n", verbs[i].usage, verbs[i].what);
                        if (i < 5)
                                printf("\n%s", launch_options);
                        return;
                }
        printf("Usage: hutch [-d|-v|-q|-s] COMMAND [options] ...\n\n"
               "hutch runs containers from one image file or folder, as the calling user.\n\nCommands:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %-9s %.*s\n", verbs[i].verb, (int) strcspn(summary(verbs[i].verb, verbs[i].what), "\n"),
                       summary(verbs[i].verb, verbs[i].what));
        printf("\nRun 'hutch help COMMAND' for a command's options.\n"
               "System configuration: %s\n"
               "(always read; HUTCH_CONF or ~/.hutch/hutch.conf can only tighten it: hutch.conf(5)).\n",
               cli_system_conf_path());
}
