#!/usr/bin/env bash
# The main job, end to end, with no cloud account: set up, then on the embedded `local`
# cluster (SeaweedFS started by blobfs itself) create a bucket, copy a tree into it, list it,
# mount it, read and write it with ordinary tools, and unmount.
#
# Runs against the real default configuration and data directory, so what it leaves (the
# bucket, the running local server) is there to explore afterwards.  Set BLOBFS_CONFIG /
# BLOBFS_DATA_DIR to keep it apart from your own.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup.sh
export PATH="$REPO/.venv/bin:$PATH"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

BUCKET="demo-$(date +%Y%m%d-%H%M%S)"
WORK="$(mktemp -d)"
MNT="${BLOBFS_DEMO_MOUNT:-/mnt/$BUCKET}"
cleanup() {
    mountpoint -q "$MNT" 2>/dev/null && blobfs umount "$MNT" || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A small tree: text, a binary larger than one multipart part, unicode and spaces, an empty dir.
mkdir -p "$WORK/sample/notes" "$WORK/sample/data/empty dir"
echo "hello from blobfs" >"$WORK/sample/hello.txt"
printf 'zwölf Boxkämpfer jagen Viktor\n' >"$WORK/sample/notes/ünïcode name.txt"
head -c $((24 * 1024 * 1024)) /dev/urandom >"$WORK/sample/data/random.bin"

say blobfs config show
say blobfs mkbucket "$BUCKET"
say blobfs cp -r "$WORK/sample" "blob:$BUCKET/"
say blobfs ls -lh "blob:$BUCKET/sample/"
say blobfs ls -r "blob:$BUCKET/"
say blobfs du "$BUCKET"

mkdir -p "$MNT"
say blobfs mount "blob:$BUCKET" "$MNT"
say ls -la "$MNT/sample"
say find "$MNT" -print
say cat "$MNT/sample/hello.txt"
say md5sum "$WORK/sample/data/random.bin" "$MNT/sample/data/random.bin"
cmp "$WORK/sample/data/random.bin" "$MNT/sample/data/random.bin"
say df -h "$MNT"
say sh -c "echo 'written through the mount' > '$MNT/sample/from-mount.txt'"
say cp -r "$MNT/sample/notes" "$MNT/sample/notes-copy"
say blobfs umount "$MNT"
say blobfs ls -l "blob:$BUCKET/sample/" "blob:$BUCKET/sample/notes-copy/"

cat <<EOF

Done.  The bucket $BUCKET is still there:
  .venv/bin/blobfs mount blob:$BUCKET $MNT    # mount it again (returns once it is ready)
  .venv/bin/blobfs umount $MNT                  # unmount (waits for pending uploads)
  .venv/bin/blobfs rmbucket --force $BUCKET     # remove it and its blobs
  .venv/bin/blobfs local stop                    # stop the embedded SeaweedFS server
EOF
