# Sourced by the tests of "a disk's format is its owner's word": raw
# disks whose guest wrote bytes that look like image metadata.
#   guest_qcow2_header FILE SIZE BACKING: a raw disk of SIZE bytes whose
#     first 64 KiB hold a qcow2 header naming BACKING (a host file) as
#     its backing file, and whose other bytes are the guest's data
#   guest_vhd_footer FILE SIZE: a raw disk whose last 512 bytes are a
#     valid dynamic VHD footer (its header would be at offset 512)
# Both also carry a recognisable pattern at 1 MiB, so a reader that
# serves anything else is seen at once.
guest_qcow2_header ()
{
  qemu-img create -q -f qcow2 -b "$3" -F raw "$1.hdr" 1M 2>/dev/null
  truncate -s "$2" "$1"
  dd if="$1.hdr" of="$1" bs=64k count=1 conv=notrunc status=none
  rm -f "$1.hdr"
  qemu-io -f raw -c 'write -P 0x5a 1M 64k' "$1" > /dev/null
}

guest_vhd_footer ()
{
  qemu-img create -q -f vpc -o subformat=dynamic "$1.hdr" 8M
  truncate -s "$2" "$1"
  tail -c 512 "$1.hdr" | dd of="$1" bs=512 seek=$(( $2 / 512 - 1 )) \
    conv=notrunc status=none
  rm -f "$1.hdr"
  qemu-io -f raw -c 'write -P 0x5a 1M 64k' "$1" > /dev/null
}
