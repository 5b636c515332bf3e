#!/usr/bin/env bash
# `make image`: builds the Dockerfile into an OCI image with buildah (Debian's package; no Docker engine),
# then runs each binary inside it as the image runs them (uid 10001): `--help` of all three, and `--check` of
# the example configs the image ships.
#
# The Dockerfile's base images are pulled when a registry is reachable. When none is (these machines reach
# only package registries), stand-ins are made under the same names, so the Dockerfile is built unchanged:
# - debian:<release>-slim: a minbase Debian from the Debian mirror (debootstrap);
# - rust:<version>-<release>: that, plus Debian's build-essential, git and curl, the host's Rust toolchain
#   (which must be the version the Dockerfile names) and the host's extra CA certificates.
# They are made once and stay in buildah's storage.
#
# Needs root, buildah, runc and debootstrap (`apt-get install buildah runc debootstrap`), and network access
# to the Debian mirror and crates.io. IMAGE names the result (default localhost/hookline:dev).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/hookline:dev}
rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)
release=$(sed -n 's/^ARG DEBIAN_RELEASE=//p' Dockerfile)
runtime=docker.io/library/debian:${release}-slim
builder=docker.io/library/rust:${rust_version}-${release}

for tool in buildah runc debootstrap; do
  command -v "$tool" >/dev/null || { echo "image: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "image: buildah needs root here (rootless needs subuids)" >&2; exit 1; }

have() { buildah inspect --type image "$1" >/dev/null 2>&1; }
log() { echo "image: $*" >&2; }

if ! have "$runtime" && ! buildah pull -q "$runtime" >/dev/null 2>&1; then
  log "cannot pull $runtime; making it from the Debian mirror with debootstrap"
  root=$(mktemp -d)
  debootstrap --variant=minbase "$release" "$root" http://deb.debian.org/debian >/dev/null
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$root" -cf - . | tar -C "$mnt" -xf -
  buildah umount "$ctr" >/dev/null
  rm -rf "$root"
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$ctr"
  buildah commit -q --rm "$ctr" "$runtime" >/dev/null
fi

if ! have "$builder" && ! buildah pull -q "$builder" >/dev/null 2>&1; then
  host=$(rustc --version | cut -d' ' -f2)
  case "$host" in
    "$rust_version" | "$rust_version".*) ;;
    *) log "cannot pull $builder, and the host's Rust is $host, not $rust_version"; exit 1 ;;
  esac
  log "cannot pull $builder; making it from $runtime, Debian's build packages and the host's Rust $host"
  ctr=$(buildah from "$runtime")
  buildah run --network host "$ctr" -- sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential ca-certificates curl git >/dev/null && rm -rf /var/lib/apt/lists/*'
  mnt=$(buildah mount "$ctr")
  # The host's own CA certificates (a TLS-intercepting egress proxy's, here), so that cargo reaches crates.io
  # from the build as it does from the host.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/"
    buildah run "$ctr" -- update-ca-certificates >/dev/null
  fi
  mkdir -p "$mnt/usr/local/rust"
  tar -C "$(rustc --print sysroot)" --exclude=./share/doc -cf - . | tar -C "$mnt/usr/local/rust" -xf -
  buildah umount "$ctr" >/dev/null
  # As the official image: CARGO_HOME at /usr/local/cargo (the Dockerfile caches its registry there).
  buildah config --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit -q --rm "$ctr" "$builder" >/dev/null
fi

log "building $IMAGE"
started=$(date +%s)
buildah bud --network host --layers --pull-never -t "$IMAGE" .
log "built $IMAGE in $(($(date +%s) - started)) s; $(buildah images --format '{{.Size}}' "$IMAGE")"

ctr=$(buildah from "$IMAGE")
trap 'buildah rm "$ctr" >/dev/null' EXIT
user=$(buildah inspect --format '{{.OCIv1.Config.User}}' "$IMAGE")
[ "$user" = "10001:10001" ] || { log "the image runs as '$user', not 10001:10001"; exit 1; }
for binary in hookline-ingress hookline-processor hookline; do
  buildah run "$ctr" -- "$binary" --help >/dev/null
  log "$binary --help: ok (as uid $(buildah run "$ctr" -- id -u))"
done
buildah run "$ctr" -- hookline-ingress --check
buildah run "$ctr" -- hookline-processor --check
log "$IMAGE: every binary runs, and the shipped configs pass --check"
