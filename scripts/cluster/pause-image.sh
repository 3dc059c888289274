#!/usr/bin/env bash
# Writes an image archive (`docker save` format) holding only a static pause program, to stdout,
# tagged $1; `ctr images import` reads it. No Docker engine and no registry needed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=${1:?usage: pause-image.sh TAG}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs" "$work/image/layer"
gcc -Os -static -o "$work/rootfs/pause" "$here/pause.c"
strip "$work/rootfs/pause"
tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$work/image/layer/layer.tar" pause
diff_id=$(sha256sum "$work/image/layer/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/cluster/pause-image.sh"}]}' \
    "$diff_id" >"$work/image/config.json"
config_id=$(sha256sum "$work/image/config.json" | cut -d' ' -f1)
mv "$work/image/config.json" "$work/image/$config_id.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer/layer.tar"]}]' "$config_id" "$tag" >"$work/image/manifest.json"
tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/image" -c .
