#!/bin/sh
# The lab host's disks at boot (lab/files/photostack-disks.service): udev's /dev/disk/by-uuid link
# for each attached volume that carries a filesystem, then every ext4 mount of /etc/fstab (as the
# fstab generator would; `nofail` entries whose disk is missing are skipped).
set -u
for device in /dev/nvme*n1; do
  [ -b "$device" ] || continue
  uuid=$(blkid -p -o value -s UUID "$device") || continue
  mkdir -p /dev/disk/by-uuid
  ln -sfn "../../${device#/dev/}" "/dev/disk/by-uuid/$uuid"
done
mount -a -t ext4
