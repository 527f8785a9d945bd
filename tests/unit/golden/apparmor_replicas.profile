## == Managed by Vigil == ##
## image nginx:1.25, source window:req-1, replicas 2
## deny by default: only what the model observed is allowed
abi <abi/3.0>,
#include <tunables/global>

profile vigil-nginx-1.25 flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>

  # ---- EXEC ----
  /bin/sh ix,  # coverage 1/2
  /usr/sbin/nginx ix,

  # ---- FILE ----
  /bin/sh r,  # coverage 1/2
  /etc/nginx/nginx.conf r,
  /proc/*/status r,  # coverage 1/2
  owner /tmp/** rw,  # coverage 1/2
  /usr/lib/x86_64-linux-gnu/** mr,
  /usr/sbin/nginx r,
  owner /var/log/nginx/access.log a,

  # ---- CAPABILITY ----
  ## unknown: capabilities are not captured on this kernel (no kprobes/fentry to hook cap_capable); the generated AppArmor profile grants none

  # ---- NETWORK ----
  network inet dgram,
  network inet stream,
  ## egress tcp 10.1.2.3:8080  # coverage 1/2
  ## dns backend.default.svc  # coverage 1/2

  # ---- PTRACE ----
  ## suppress ptrace denials when using 'docker ps' or using 'ps' inside a container
  ptrace (trace,read,tracedby,readby) peer=vigil-nginx-1.25,

  # ---- SIGNAL ----
  ## host (privileged) processes may send signals to container processes.
  signal (receive) peer=unconfined,
  ## container processes may send signals amongst themselves.
  signal (send,receive) peer=vigil-nginx-1.25,
}
