# Helpers of the backup tests (tests/test-backup-*.sh), sourced after
# functions.sh: a field of `vdimotion backup create --json`'s output, a
# repository's points, and the check every point gets, that it restores
# identical to the disk as it was when the point was made.  A test keeps
# that copy of the disk as $T/at-ID.raw for each point ID it makes.

# json_field KEY < JSON: the member KEY of a JSON object, as Python
# prints it.
json_field () { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

# points REPO: the ids of REPO's points (a directory or an https:// URL),
# oldest first, on one line.
points () { "$VDIMOTION" backup list --json "$1" | python3 -c "import json,sys; print(' '.join(p['id'] for p in json.load(sys.stdin)))"; }

# check_points REPO DIR [quick|ends]: every point of REPO restores
# identical to $T/at-ID.raw through `vdimotion backup restore`, and its
# qcow2 file (under DIR, the repository's directory on this host) through
# `qemu-img convert`, and checks clean with `qemu-img check`.
#   quick  vdimotion's restores only, no qemu-img;
#   ends   under the sanitizers (VDM_SANITIZED), vdimotion restores the
#          oldest and the newest point only (qemu-img still reads all).
check_points ()
{
  ids=$(points "$1")
  for id in $ids; do
    if [ "${3-}" != ends ] || [ -z "${VDM_SANITIZED-}" ] \
       || [ "$id" = "${ids%% *}" ] || [ "$id" = "${ids##* }" ]; then
      rm -f "$T/r.raw"
      "$VDIMOTION" backup restore "$1" "$id" "$T/r.raw" > /dev/null
      cmp "$T/r.raw" "$T/at-$id.raw" || fail "point $id: restore differs"
    fi
    [ "${3-}" != quick ] || continue
    f=$(ls "$2"/*/"$id.qcow2")
    (cd "$(dirname "$f")" && qemu-img convert -O raw "$id.qcow2" "$T/q.raw")
    cmp "$T/q.raw" "$T/at-$id.raw" || fail "point $id: qemu-img convert differs"
    qemu-img check -q "$f" || fail "point $id: qemu-img check"
  done
}
