#!/usr/bin/env bash
# Builds the hubgate image from deploy/Dockerfile and runs docker-compose.yml for real with
# podman and podman-compose, then drives it with the official client (compose.test.mjs beside
# this file). Works without an image registry: the Debian base image is made with debootstrap
# from Debian's package mirror, the Rust build image from the host's own toolchain, and Redis,
# nginx and Prometheus from Debian packages; docker-compose.yml takes them through REDIS_IMAGE,
# NGINX_IMAGE, PROMETHEUS_IMAGE and HUBGATE_IMAGE. Grafana (not packaged by Debian) is not
# started; its provisioning is checked statically by gateway/tests/deploy_files.rs.
#
#   sudo deploy/podman/test-compose.sh          # needs root; conformance/node_modules (npm ci)
#
# Cached between runs: the debootstrap tarball under $HUBGATE_PODMAN_CACHE
# (/var/tmp/hubgate-podman), podman's image storage and layer cache, and the cargo registry and
# target directory in buildah's cache mounts (/var/tmp/buildah-cache). If the container
# engine cannot run a container here, this fails and says why.
set -euo pipefail
cd "$(dirname "$0")/../.."

cache=${HUBGATE_PODMAN_CACHE:-/var/tmp/hubgate-podman}
venv=${HUBGATE_VENV:-/var/tmp/hubgate-venv}
# Bump the tag when the recipe below changes, so cached copies are made anew.
base_image=localhost/hubgate-bookworm:base-3

say() { printf '[test-compose] %s\n' "$*" >&2; }
fail() { printf '[test-compose] FAIL: %s\n' "$*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

[ "$(id -u)" = 0 ] || fail "runs podman as root: run it as root"
started=$(date +%s)

# --- installs (Debian packages where missing; podman-compose pinned in the venv) -------------
packages=()
for pair in podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${pair%%:*}" >/dev/null || packages+=("${pair#*:}")
done
if [ ${#packages[@]} -gt 0 ]; then
  say "installing ${packages[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
if [ ! -x "$venv/bin/pip" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
  python3 -m venv --clear "$venv" || fail "cannot create the venv $venv (python3-venv missing?)"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r deploy/podman/requirements.txt
compose_bin=$venv/bin/podman-compose

# --- engine settings -------------------------------------------------------------------------
# This sandbox forbids raising RLIMIT_NOFILE/RLIMIT_NPROC (podman's default ulimits) and crun
# refuses its hybrid cgroups. Idempotent: written once as a drop-in, and only when no
# containers.conf on the machine sets these already; an administrator's own settings win.
confs=(/etc/containers/containers.conf /etc/containers/containers.conf.d/*.conf)
if ! grep -qs '^[[:space:]]*default_ulimits[[:space:]]*=' "${confs[@]}" \
   || ! grep -qs '^[[:space:]]*runtime[[:space:]]*=' "${confs[@]}"; then
  say "writing /etc/containers/containers.conf.d/50-hubgate.conf (default_ulimits = [], runtime = runc)"
  mkdir -p /etc/containers/containers.conf.d
  printf '%s\n' '# Written by hubgate deploy/podman/test-compose.sh.' \
    '[containers]' 'default_ulimits = []' '' '[engine]' 'runtime = "runc"' \
    > /etc/containers/containers.conf.d/50-hubgate.conf
fi
podman info >/dev/null 2>"$cache.info.err" || fail "podman info failed: $(cat "$cache.info.err")"

# --- base image: Debian bookworm minbase from debootstrap, trimmed like debian:*-slim ---------
# The same packages as debian:bookworm-slim (no ca-certificates: images that need them install
# them, as deploy/Dockerfile's certs stage and rust.Containerfile do).
mkdir -p "$cache"
if ! podman image exists "$base_image"; then
  tarball=$cache/bookworm-minbase-${base_image##*:}.tar
  if [ ! -s "$tarball" ]; then
    say "debootstrap --variant=minbase bookworm (once; cached in $tarball)"
    find "$cache" -maxdepth 1 -name 'bookworm-minbase-*.tar' ! -path "$tarball" -delete
    root=$cache/rootfs.tmp
    rm -rf "$root"
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian \
      >"$cache/debootstrap.log" 2>&1 || fail "debootstrap failed: $(tail -5 "$cache/debootstrap.log")"
    # No services start during image builds (as in Debian's official images); no docs, man
    # pages, locales or package caches in the image (apt deletes its downloads after installing).
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    printf 'path-exclude /usr/share/%s/*\n' doc man locale info groff lintian linda \
      > "$root/etc/dpkg/dpkg.cfg.d/excludes"
    printf '%s\n' 'APT::Install-Recommends "false";' 'APT::Install-Suggests "false";' \
      'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' > "$root/etc/apt/apt.conf.d/90hubgate"
    rm -rf "$root"/usr/share/{doc,man,locale,info,groff,lintian,linda}/* \
      "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  say "importing $base_image"
  podman import --change 'CMD ["bash"]' "$tarball" "$base_image" >/dev/null
fi
# The engine must run a container here; otherwise nothing below can work.
out=$(podman run --rm --network=none "$base_image" true 2>&1) || fail "podman cannot run a container: $out"

# --- the Rust build image: the host's toolchain on the base image -----------------------------
command -v rustc >/dev/null || fail "rustc is not installed: the Rust build image is made from the host's toolchain"
sysroot=$(rustc --print sysroot)
rust_version=$(rustc --version | awk '{print $2}')
rust_image=localhost/hubgate-rust:$rust_version-${base_image##*:}
if ! podman image exists "$rust_image"; then
  say "building $rust_image from $sysroot (once per toolchain version and base image)"
  context=$cache/rust-context
  rm -rf "$context" && mkdir -p "$context/toolchain"
  # Hard links where /var/tmp and the toolchain share a filesystem; the docs are left out.
  for part in bin lib libexec; do
    [ -d "$sysroot/$part" ] || continue
    cp -al "$sysroot/$part" "$context/toolchain/" 2>/dev/null || cp -a "$sysroot/$part" "$context/toolchain/"
  done
  rm -rf "$context/toolchain/lib/rustlib/src"
  mkdir -p "$context/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$context/ca-certificates/" 2>/dev/null || true
  podman build --pull=never --network=host --build-arg BASE_IMAGE="$base_image" \
    -f deploy/podman/rust.Containerfile -t "$rust_image" "$context" >"$cache/rust-image.log" 2>&1 \
    || fail "building $rust_image failed: $(tail -20 "$cache/rust-image.log")"
  rm -rf "$context"
fi

# --- stand-ins for the compose file's third-party images, from Debian packages ----------------
for name in redis nginx prometheus; do
  podman build --pull=never --network=host --build-arg BASE_IMAGE="$base_image" \
    -f "deploy/podman/$name.Containerfile" -t "localhost/hubgate-$name:debian" deploy/podman \
    >"$cache/$name-image.log" 2>&1 || fail "building the $name image failed: $(tail -20 "$cache/$name-image.log")"
done
say "base images ready ($(elapsed "$started"))"

# --- the hubgate image from deploy/Dockerfile -------------------------------------------------
# --network=host: cargo fetches crates from crates.io in the build stage. The cargo registry
# and target directory persist in buildah's cache mounts, so a rebuild is incremental.
# --format docker: the OCI image format has no HEALTHCHECK, podman would drop it.
hubgate_image=localhost/hubgate:compose-test
build_started=$(date +%s)
say "podman build -f deploy/Dockerfile (log: $cache/hubgate-image.log)"
podman build --pull=never --network=host --format docker \
  --build-arg RUST_IMAGE="$rust_image" --build-arg RUNTIME_IMAGE="$base_image" \
  -f deploy/Dockerfile -t "$hubgate_image" . >"$cache/hubgate-image.log" 2>&1 \
  || fail "podman build -f deploy/Dockerfile failed: $(tail -30 "$cache/hubgate-image.log")"
say "hubgate image built in $(elapsed "$build_started")"

# --- the cluster of docker-compose.yml, driven through its published ports -------------------
[ -d conformance/node_modules/@microsoft/signalr ] \
  || fail "conformance/node_modules is missing: run npm ci in conformance/ first"
say "docker-compose.yml with $("$compose_bin" version 2>/dev/null | head -1) (compose.test.mjs)"
HUBGATE_IMAGE=$hubgate_image \
REDIS_IMAGE=localhost/hubgate-redis:debian \
NGINX_IMAGE=localhost/hubgate-nginx:debian \
PROMETHEUS_IMAGE=localhost/hubgate-prometheus:debian \
COMPOSE_BIN=$compose_bin \
  node --test --test-reporter=spec deploy/podman/compose.test.mjs
say "done in $(elapsed "$started")"
