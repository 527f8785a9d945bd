## == Managed by Vigil == ##
## image debian:10, source learned-profile, replicas 1
## deny by default: only what the model observed is allowed
abi <abi/3.0>,
#include <tunables/global>

profile vigil-debian-10 flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>

  # ---- EXEC ----
  /usr/bin/id ix,
  /usr/bin/sleep ix,
  /usr/bin/unshare ix,

  # ---- FILE ----
  owner /dev/tty rw,
  /etc/group r,
  /etc/ld.so.cache r,
  /etc/nsswitch.conf r,
  /etc/passwd r,
  /etc/shadow r,
  /proc/*/status r,
  /proc/filesystems r,
  /proc/sys/kernel/ngroups_max r,
  owner /root/c1 rw,
  owner /tmp/** w,
  /usr/bin/id r,
  /usr/bin/sleep r,
  /usr/bin/unshare r,
  /usr/lib/x86_64-linux-gnu/** mr,

  # ---- CAPABILITY ----
  ## unknown: capabilities are not captured on this kernel (no kprobes/fentry to hook cap_capable); the generated AppArmor profile grants none

  # ---- NETWORK ----
  network inet dgram,
  network inet stream,
  ## egress tcp 10.0.0.0/8:443
  ## dns example.com

  # ---- PTRACE ----
  ## suppress ptrace denials when using 'docker ps' or using 'ps' inside a container
  ptrace (trace,read,tracedby,readby) peer=vigil-debian-10,

  # ---- SIGNAL ----
  ## host (privileged) processes may send signals to container processes.
  signal (receive) peer=unconfined,
  ## container processes may send signals amongst themselves.
  signal (send,receive) peer=vigil-debian-10,
}
