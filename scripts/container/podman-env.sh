#!/usr/bin/env bash
# Sourced before podman: points CONTAINERS_CONF at a containers.conf for this
# machine class, where crun fails ("cgroups in hybrid mode not supported") and
# podman's default ulimits exceed what a container may be granted. Both are
# per-machine facts, so the file is written here, from `ulimit -H`, rather
# than shipped. A CONTAINERS_CONF already set is left alone.
if [ -z "${CONTAINERS_CONF:-}" ]; then
    conf_dir="${XDG_CACHE_HOME:-$HOME/.cache}/fovea"
    mkdir -p "$conf_dir"
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=1048576
    nproc=$(ulimit -Hu)
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
    cat > "$conf_dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
CONF
    export CONTAINERS_CONF="$conf_dir/containers.conf"
fi
