#!/bin/sh
# The images' entrypoint: runs what it is given (docs/docker.md).
#   no arguments        -> skingenbench serve "$SKINGENBENCH_STAGE"   (the service images' default)
#   a program on PATH   -> that program (prefect flow-run execute, skingenbench ..., python ..., sh)
#   anything else       -> a skingenbench subcommand (serve generation, data phantom ..., run ...)
# `exec` makes the program PID 1, so SIGTERM from `docker stop` or the kubelet reaches the server's drain.
set -eu

# HOME and TMPDIR must be writable; on a read-only root filesystem they need volumes (emptyDir, tmpfs).
# Said here, at start, rather than by a job failing later with "No usable temporary directory".
for dir in "${HOME:-/srv}" "${TMPDIR:-/tmp}"; do
    if [ ! -w "$dir" ]; then
        echo "entrypoint: warning: $dir is not writable by uid $(id -u): mount a volume there" \
             "(an emptyDir or tmpfs) when the root filesystem is read-only" >&2
    fi
done

if [ "$#" -eq 0 ]; then
    if [ -z "${SKINGENBENCH_STAGE:-}" ]; then
        echo "entrypoint: nothing to run: pass a command, or set SKINGENBENCH_STAGE to one of" \
             "preprocessing, generation, evaluation, classification" >&2
        exit 64
    fi
    exec skingenbench serve "$SKINGENBENCH_STAGE"
fi
if command -v "$1" >/dev/null 2>&1; then
    exec "$@"
fi
exec skingenbench "$@"
