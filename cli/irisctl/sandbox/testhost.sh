#!/usr/bin/env bash
# testhost.sh - disposable IRIS sandbox/test hosts (Debian bookworm, systemd as PID 1, sshd)
# built with mmdebstrap and booted with systemd-nspawn; no Docker, no internet.
# Driven from Python by irisctl.sandbox.hosts (irisctl sandbox, tests/hosts).
#
#   testhost.sh deps                  apt-get install the host tools this script needs
#   testhost.sh build                 build (or reuse) the cached rootfs, keyed by its package list
#   testhost.sh up NAME IP            boot NAME at IP (on bridge $TESTHOST_BRIDGE), wait until ssh + boot done
#   testhost.sh reboot NAME           power NAME off cleanly and boot it again on the same disk (overlay)
#   testhost.sh down NAME|--all       stop NAME cleanly, remove its overlay, cgroups, veth; last one out
#                                     also stops the apt proxy and removes the bridge
#   testhost.sh status                list running test hosts (pid, ip, memory)
#   testhost.sh inventory             print an Ansible INI inventory of running test hosts
#   testhost.sh ssh NAME [CMD...]     ssh to NAME as ec2-user (use TESTHOST_USER=root for root)
#   testhost.sh acme-up               start pebble (ACME test CA) + pebble-challtestsrv (DNS) on the host
#   testhost.sh acme-dns FQDN IP      add an A record to the pebble DNS (up does this for NAME.$TESTHOST_DOMAIN)
#   testhost.sh acme-down             stop them
#
# Must run as root on a host with full capabilities (no systemd/dbus needed on the host).
# All state lives in $TESTHOST_HOME; nothing is written elsewhere except cgroups, the bridge and veths.
set -euo pipefail

SELF=$(readlink -f "$0")
# State outside the work tree, so the cached rootfs survives fresh clones of the repository.
: "${TESTHOST_HOME:=/var/lib/iris-sandbox}"
: "${TESTHOST_SUITE:=bookworm}"
: "${TESTHOST_VARIANT:=important}"
: "${TESTHOST_PACKAGES:=systemd,systemd-sysv,dbus,openssh-server,python3,sudo,iproute2}"
: "${TESTHOST_EXTRA_PACKAGES:=}"          # e.g. nginx,certbot (pre-baked => faster, but changes apt idempotence)
: "${TESTHOST_BRIDGE:=thbr0}"
: "${TESTHOST_GW:=10.231.0.1}"            # host address on the bridge (also apt proxy + pebble address)
: "${TESTHOST_PREFIX:=24}"
: "${TESTHOST_DOMAIN:=test}"              # NAME.$TESTHOST_DOMAIN goes to /etc/hosts and the ACME DNS
: "${TESTHOST_APT_PROXY:=1}"              # 1: run apt-cacher-ng on $TESTHOST_GW:3142 for apt inside hosts
: "${TESTHOST_BOOT_TIMEOUT:=60}"
: "${TESTHOST_STOP_TIMEOUT:=20}"
: "${TESTHOST_USER:=ec2-user}"
: "${TESTHOST_KEEP_NET:=0}"               # 1: keep bridge + apt proxy when the last host goes down
: "${TESTHOST_APT_PROXY_PORT:=13142}"     # not 3142, so a packaged apt-cacher-ng on *:3142 cannot clash
ACNG_PORT=$TESTHOST_APT_PROXY_PORT
PEBBLE_PORT=14000
DEPS=(systemd-container mmdebstrap apt-cacher-ng pebble zstd curl openssl iproute2 openssh-client)

CACHE=$TESTHOST_HOME/cache
RUN=$TESTHOST_HOME/run
KEY=$TESTHOST_HOME/keys/id_ed25519
SSH_OPTS=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o LogLevel=ERROR -o ConnectTimeout=2)

log() { printf '[testhost %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need() { local c; for c; do command -v "$c" >/dev/null || die "$c missing: run '$0 deps'"; done; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

# ---------------------------------------------------------------- rootfs ---
# Runs as mmdebstrap --customize-hook with $1 = the new rootfs (chroot has /proc,/sys,/dev).
_customize() {
  local R=$1
  chroot "$R" systemctl enable systemd-networkd.service >/dev/null 2>&1
  # apt-daily timers grab the dpkg lock at random times and break Ansible's apt module.
  chroot "$R" systemctl mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1
  chroot "$R" useradd -m -s /bin/bash -c 'EC2 Default User' ec2-user
  printf 'ec2-user ALL=(ALL) NOPASSWD:ALL\n' >"$R/etc/sudoers.d/90-cloud-init-users"
  chmod 0440 "$R/etc/sudoers.d/90-cloud-init-users"
  install -d -m 0700 "$R/root/.ssh"
  install -d -m 0700 -o 1000 -g 1000 "$R/home/ec2-user/.ssh"
  printf 'UseDNS no\nPasswordAuthentication no\n' >"$R/etc/ssh/sshd_config.d/10-testhost.conf"
  # mmdebstrap copies the build host's resolv.conf and hostname; a test host must not use them.
  rm -f "$R/etc/resolv.conf"
  printf '# testhost: no DNS server on purpose; names come from /etc/hosts\n' >"$R/etc/resolv.conf"
  echo testhost >"$R/etc/hostname"
  printf 'LANG=C.UTF-8\n' >"$R/etc/default/locale"
  : >"$R/etc/machine-id"   # empty => systemd takes a fresh id from nspawn's UUID at every boot
}

cache_key() {
  { printf '%s\n' v1 "$TESTHOST_SUITE" "$TESTHOST_VARIANT" "$TESTHOST_PACKAGES" "$TESTHOST_EXTRA_PACKAGES"
    declare -f _customize; } | sha256sum | cut -c1-16
}
rootfs_dir() { echo "$CACHE/rootfs-$(cache_key)"; }

cmd_build() {
  local key dir tarball t0
  key=$(cache_key); dir=$CACHE/rootfs-$key; tarball=$CACHE/rootfs-$key.tar.zst
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.build.lock"; flock 8   # parallel "up"s wait for one build
  if [[ -f $dir.ok && -d $dir ]]; then exec 8>&-; log "rootfs cached: $dir"; echo "$dir"; return; fi
  rm -rf "$dir" "$dir.tmp"
  if [[ -f $tarball ]]; then
    t0=$(now); mkdir -p "$dir.tmp"
    tar --zstd --numeric-owner --xattrs --xattrs-include='*' -xpf "$tarball" -C "$dir.tmp"
    mv "$dir.tmp" "$dir"; touch "$dir.ok"; exec 8>&-
    log "rootfs unpacked from $tarball in $(elapsed "$t0")s"; echo "$dir"; return
  fi
  need mmdebstrap zstd
  local pkgs=$TESTHOST_PACKAGES
  [[ -n $TESTHOST_EXTRA_PACKAGES ]] && pkgs+=",$TESTHOST_EXTRA_PACKAGES"
  t0=$(now)
  mmdebstrap --quiet --variant="$TESTHOST_VARIANT" --include="$pkgs" \
    --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
    --skip=cleanup/apt/lists \
    --customize-hook="\"$SELF\" _customize \"\$1\"" \
    "$TESTHOST_SUITE" "$dir.tmp" >&2
  log "mmdebstrap done in $(elapsed "$t0")s"
  t0=$(now)
  tar --zstd --numeric-owner --xattrs --xattrs-include='*' -cpf "$tarball.tmp" -C "$dir.tmp" .
  mv "$tarball.tmp" "$tarball"
  log "cache tarball $tarball ($(du -h "$tarball" | cut -f1)) written in $(elapsed "$t0")s"
  mv "$dir.tmp" "$dir"; touch "$dir.ok"; exec 8>&-
  echo "$dir"
}

# ------------------------------------------------------- shared host net ---
ensure_key() {
  [[ -f $KEY ]] && return
  mkdir -p "$(dirname "$KEY")"; ssh-keygen -q -t ed25519 -N '' -C testhost -f "$KEY"
}

pid_alive() {  # PID [COMM]: running (not a zombie) and, if given, /proc/PID/comm == COMM
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]] || return 1
  [[ -z ${2:-} || $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]
}

net_up() {  # caller holds the lock
  if ! ip link show "$TESTHOST_BRIDGE" >/dev/null 2>&1; then
    ip link add "$TESTHOST_BRIDGE" type bridge
    ip addr add "$TESTHOST_GW/$TESTHOST_PREFIX" dev "$TESTHOST_BRIDGE"
    ip link set "$TESTHOST_BRIDGE" up
    log "bridge $TESTHOST_BRIDGE $TESTHOST_GW/$TESTHOST_PREFIX created"
  fi
  [[ $TESTHOST_APT_PROXY == 1 ]] || return 0
  if [[ -f $TESTHOST_HOME/acng/pid.launcher ]] && pid_alive "$(cat "$TESTHOST_HOME/acng/pid.launcher")" apt-cacher-ng; then
    return 0
  fi
  local A=$TESTHOST_HOME/acng; mkdir -p "$A/conf" "$A/cache" "$A/log"
  # No Remap-* lines: the stock backends (ftp.debian.org) are not reachable; act as a plain caching proxy.
  cat >"$A/conf/acng.conf" <<EOF
CacheDir: $A/cache
LogDir: $A/log
SupportDir: /usr/lib/apt-cacher-ng
SocketPath: $A/socket
PidFile: $A/pid
Port: $ACNG_PORT
BindAddress: $TESTHOST_GW
ExThreshold: 4
EOF
  (exec 9>&-; exec setsid apt-cacher-ng -c "$A/conf" ForeGround=1 </dev/null >>"$A/log/stdout.log" 2>&1) &
  echo $! >"$A/pid.launcher"
  local i; for i in $(seq 50); do
    (exec 3<>"/dev/tcp/$TESTHOST_GW/$ACNG_PORT") 2>/dev/null && { log "apt proxy on $TESTHOST_GW:$ACNG_PORT"; return 0; }
    sleep 0.1
  done
  die "apt-cacher-ng did not start, see $A/log"
}

net_down_if_idle() {  # caller holds the lock
  [[ $TESTHOST_KEEP_NET == 1 ]] && return 0
  compgen -G "$RUN/*/pid" >/dev/null && return 0
  [[ -f $TESTHOST_HOME/acme/pebble.pid ]] && return 0
  local A=$TESTHOST_HOME/acng p
  if [[ -f $A/pid.launcher ]]; then
    p=$(cat "$A/pid.launcher")
    if pid_alive "$p" apt-cacher-ng; then
      kill "$p"; for _ in $(seq 50); do pid_alive "$p" apt-cacher-ng || break; sleep 0.1; done
    fi
    rm -f "$A/pid.launcher" "$A/pid"
  fi
  if ip link show "$TESTHOST_BRIDGE" >/dev/null 2>&1; then
    ip link del "$TESTHOST_BRIDGE"; log "bridge $TESTHOST_BRIDGE removed"
  fi
}

with_lock() { mkdir -p "$TESTHOST_HOME"; exec 9>"$TESTHOST_HOME/.lock"; flock 9; "$@"; exec 9>&-; }

# ---------------------------------------------------------------- cgroups ---
# Without systemd on the host, nspawn --keep-unit creates "payload"/"supervisor" cgroups next to
# itself. Give each container its own parent so two containers never share one cgroup tree.
cgroup_dirs() {  # NAME -> writable cgroup dirs that the launcher moves into
  local name=$1 line hier path
  while IFS= read -r line; do
    hier=${line#*:}; hier=${hier%%:*}; path=${line#*:*:}
    case $hier in
      name=systemd) echo "/sys/fs/cgroup/systemd/testhost-$name" ;;
      "")  local u; u=$(findmnt -rn -t cgroup2 -o TARGET | head -1)
           [[ -n $u ]] && echo "$u/testhost-$name" ;;
      memory) [[ -d /sys/fs/cgroup/memory ]] && echo "/sys/fs/cgroup/memory${path%/}/testhost-$name" ;;
    esac
  done </proc/self/cgroup
}
cgroup_cleanup() {  # NAME [recorded dirs]
  local d
  for d in ${2:-} /sys/fs/cgroup/*/testhost-"$1" /sys/fs/cgroup/memory/*/*/testhost-"$1"; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  true
}
cgroup_v2_dir() { local u; u=$(findmnt -rn -t cgroup2 -o TARGET | head -1); echo "$u/testhost-$1"; }

# -------------------------------------------------------------------- up ---
# Boot NAME's merged tree with nspawn and wait until ssh answers and the boot transaction is done.
boot() {
  local name=$1 ip=$2 t0=$3 d=$RUN/$1
  local M=$d/merged
  local cgs; cgs=$(cgroup_dirs "$name"); echo "$cgs" >"$d/cgroups"
  (
    for cg in $cgs; do mkdir -p "$cg" && echo "$BASHPID" >"$cg/cgroup.procs"; done
    # setsid: own session, so the caller's Ctrl-C / process-group kill does not hit the container
    exec setsid systemd-nspawn --quiet -D "$M" --boot --machine="$name" \
      --register=no --keep-unit --settings=no --link-journal=no --resolv-conf=off \
      --network-bridge="$TESTHOST_BRIDGE" --console=read-only
  ) </dev/null >"$d/console.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$d/pid"
  # wait for sshd, then for the boot transaction to finish (no half-booted hosts for Ansible)
  local deadline=$(( $(date +%s) + TESTHOST_BOOT_TIMEOUT )) state="" t22=""
  while :; do
    pid_alive "$pid" || fail_up "$name" "nspawn exited"   # (comm is bash/setsid for a moment)
    (( $(date +%s) < deadline )) || fail_up "$name" "not ready after ${TESTHOST_BOOT_TIMEOUT}s (last state: ${state:-no ssh})"
    if timeout 1 bash -c "exec 3<>/dev/tcp/$ip/22" 2>/dev/null; then
      [[ -n $t22 ]] || t22=$(elapsed "$t0")
      state=$(ssh -i "$KEY" "${SSH_OPTS[@]}" "$TESTHOST_USER@$ip" \
              'timeout 30 systemctl is-system-running --wait' 2>/dev/null) || true
      [[ $state == running || $state == degraded ]] && break
    fi
    sleep 0.1
  done
  [[ $state == degraded ]] && log "WARNING: $name is degraded: $(ssh -i "$KEY" "${SSH_OPTS[@]}" "root@$ip" 'systemctl --failed --no-legend' | tr '\n' ' ')"
  return 0
}

fail_up() { tail -n 40 "$RUN/$1/console.log" >&2 || true; cmd_down "$1" || true; die "$1: $2"; }
cmd_up() {
  local name=${1:?usage: up NAME IP} ip=${2:?usage: up NAME IP}
  need systemd-nspawn ssh ssh-keygen ip ss
  [[ $TESTHOST_APT_PROXY == 1 ]] && need apt-cacher-ng
  [[ $name =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "bad NAME '$name' (use [a-z0-9-])"
  local d=$RUN/$name t0; t0=$(now)
  [[ -e $d ]] && die "$name already exists ($d); run: $0 down $name"
  local rootfs; rootfs=$(cmd_build)
  ensure_key
  with_lock net_up
  mkdir -p "$d"/{upper,work,merged}
  mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$d/upper,workdir=$d/work" "$d/merged"
  echo "$ip" >"$d/ip"
  local M=$d/merged
  # per-host files (land in the overlay's upper dir; the cached rootfs is never modified)
  echo "$name" >"$M/etc/hostname"
  printf '127.0.0.1\tlocalhost\n%s\t%s.%s %s\n%s\ttesthost-gw\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    "$ip" "$name" "$TESTHOST_DOMAIN" "$name" "$TESTHOST_GW" >"$M/etc/hosts"
  mkdir -p "$M/etc/systemd/network"
  cat >"$M/etc/systemd/network/10-host0.network" <<EOF
[Match]
Name=host0

[Network]
Address=$ip/$TESTHOST_PREFIX
Gateway=$TESTHOST_GW
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
  if [[ $TESTHOST_APT_PROXY == 1 ]]; then
    # A fetch the proxy never finishes must fail and be retried, not hang a converge (seen:
    # apt-get update waiting 13 minutes on one index file).
    printf 'Acquire::http::Proxy "http://%s:%s/";\nAcquire::http::Timeout "60";\nAcquire::Retries "3";\n' \
      "$TESTHOST_GW" "$ACNG_PORT" >"$M/etc/apt/apt.conf.d/01testhost-proxy"
  fi
  install -m 0600 "$KEY.pub" "$M/root/.ssh/authorized_keys"
  install -m 0600 -o 1000 -g 1000 "$KEY.pub" "$M/home/ec2-user/.ssh/authorized_keys"

  boot "$name" "$ip" "$t0"
  if [[ -f $TESTHOST_HOME/acme/challtestsrv.pid ]]; then cmd_acme_dns "$name.$TESTHOST_DOMAIN" "$ip" || true; fi
  log "$name up: ip=$ip pid=$(cat "$d/pid") ready=$(elapsed "$t0")s (ssh -i $KEY $TESTHOST_USER@$ip)"
}

# ---------------------------------------------------------------- reboot ---
# A real reboot keeps the host's disk: power off cleanly (SIGTERM to nspawn = systemctl poweroff),
# keep the overlay, boot the same tree again.
cmd_reboot() {
  local name=${1:?usage: reboot NAME} d=$RUN/${1:-} t0; t0=$(now)
  [[ -f $d/pid && -f $d/ip ]] || die "$name: not running"
  local pid ip; pid=$(cat "$d/pid"); ip=$(cat "$d/ip")
  if pid_alive "$pid" systemd-nspawn; then
    kill -TERM "$pid"
    local i; for ((i = 0; i < TESTHOST_STOP_TIMEOUT * 10; i++)); do pid_alive "$pid" systemd-nspawn || break; sleep 0.1; done
    pid_alive "$pid" systemd-nspawn && die "$name: did not power off within ${TESTHOST_STOP_TIMEOUT}s"
  fi
  cgroup_cleanup "$name" "$(cat "$d/cgroups" 2>/dev/null)"
  ss -K dst "$ip" >/dev/null 2>&1 || true
  cat "$d/console.log" >>"$d/console.prev.log" 2>/dev/null || true
  boot "$name" "$ip" "$t0"
  log "$name rebooted in $(elapsed "$t0")s"
}

# ------------------------------------------------------------------ down ---
cmd_down() {
  local name=${1:?usage: down NAME|--all}
  if [[ $name == --all ]]; then
    local x; for x in "$RUN"/*/; do [[ -d $x ]] && cmd_down "$(basename "$x")"; done
    with_lock net_down_if_idle; return
  fi
  local d=$RUN/$name t0; t0=$(now)
  [[ -d $d ]] || { log "$name: not running"; return 0; }
  local pid= ip= cgs=; [[ -f $d/pid ]] && pid=$(cat "$d/pid"); [[ -f $d/ip ]] && ip=$(cat "$d/ip")
  [[ -f $d/cgroups ]] && cgs=$(cat "$d/cgroups")
  if [[ -n $pid ]] && pid_alive "$pid" systemd-nspawn; then
    kill -TERM "$pid"   # nspawn turns SIGTERM into SIGRTMIN+3 for PID 1 = clean "systemctl poweroff"
    local i; for ((i = 0; i < TESTHOST_STOP_TIMEOUT * 10; i++)); do pid_alive "$pid" systemd-nspawn || break; sleep 0.1; done
    if pid_alive "$pid" systemd-nspawn; then log "$name: no clean stop, SIGKILL"; kill -KILL "$pid" || true; fi
  fi
  # anything left in the container's cgroup (e.g. after SIGKILL) gets killed via cgroup.kill
  local v2; v2=$(cgroup_v2_dir "$name")
  if [[ -d $v2 ]]; then
    for _ in $(seq 50); do
      [[ -z $(find "$v2" -name cgroup.procs -exec cat {} + 2>/dev/null) ]] && break
      echo 1 >"$v2/cgroup.kill" 2>/dev/null || true; sleep 0.1
    done
  fi
  if mountpoint -q "$d/merged"; then umount "$d/merged" 2>/dev/null || umount -l "$d/merged"; fi
  mkdir -p "$TESTHOST_HOME/logs"; mv -f "$d/console.log" "$TESTHOST_HOME/logs/$name.console.log" 2>/dev/null || true
  rm -rf "$d"
  cgroup_cleanup "$name" "$cgs"
  [[ -d /run/systemd/nspawn/propagate/$name ]] && rmdir "/run/systemd/nspawn/propagate/$name" 2>/dev/null
  local veth="vb-$name"; ip link show "${veth:0:15}" >/dev/null 2>&1 && ip link del "${veth:0:15}"
  # host-side TCP sockets to the dead host (e.g. ssh ControlPersist masters of ansible/testinfra) would
  # linger until their timeout and could be reused by the next host with the same IP: destroy them.
  [[ -n $ip ]] && ss -K dst "$ip" >/dev/null 2>&1 || true
  log "$name down in $(elapsed "$t0")s"
  with_lock net_down_if_idle
}

# ---------------------------------------------------------------- helpers ---
cmd_status() {
  local x name pid mem cg
  printf '%-16s %-15s %-8s %s\n' NAME IP PID MEM_MiB
  for x in "$RUN"/*/; do
    [[ -f $x/pid ]] || continue
    name=$(basename "$x"); pid=$(cat "$x/pid")
    mem=-; for cg in $(cat "$x/cgroups" 2>/dev/null); do
      [[ -f $cg/memory.usage_in_bytes ]] && mem=$(( $(cat "$cg/memory.usage_in_bytes") / 1048576 ))
    done
    pid_alive "$pid" systemd-nspawn || pid="$pid(dead)"
    printf '%-16s %-15s %-8s %s\n' "$name" "$(cat "$x/ip")" "$pid" "$mem"
  done
}
cmd_inventory() {
  local x
  echo "[testhosts]"
  for x in "$RUN"/*/; do [[ -f $x/ip ]] && echo "$(basename "$x") ansible_host=$(cat "$x/ip")"; done
  cat <<EOF

[testhosts:vars]
ansible_user=ec2-user
ansible_become=true
ansible_python_interpreter=/usr/bin/python3
ansible_ssh_private_key_file=$KEY
ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'
EOF
}
cmd_ssh() { local name=${1:?usage: ssh NAME [CMD]}; shift; exec ssh -i "$KEY" "${SSH_OPTS[@]}" "$TESTHOST_USER@$(cat "$RUN/$name/ip")" "$@"; }

# ------------------------------------------------------------------ ACME ---
cmd_acme_up() {
  need pebble pebble-challtestsrv openssl curl
  local A=$TESTHOST_HOME/acme; mkdir -p "$A"
  ensure_key; with_lock net_up
  if [[ -f $A/pebble.pid ]] && pid_alive "$(cat "$A/pebble.pid")" pebble; then log "pebble already running"; return; fi
  if [[ ! -f $A/ca.pem ]]; then  # our own CA for pebble's HTTPS API (Debian's pebble ships no test/certs)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -keyout "$A/ca.key" -out "$A/ca.pem" -subj "/CN=testhost pebble API CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$A/pebble.key" \
      -out "$A/pebble.csr" -subj "/CN=pebble" 2>/dev/null
    printf 'subjectAltName=DNS:pebble,DNS:localhost,IP:127.0.0.1,IP:%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' \
      "$TESTHOST_GW" >"$A/pebble.ext"
    openssl x509 -req -in "$A/pebble.csr" -CA "$A/ca.pem" -CAkey "$A/ca.key" -CAcreateserial \
      -days 3650 -extfile "$A/pebble.ext" -out "$A/pebble.pem" 2>/dev/null
  fi
  cat >"$A/pebble-config.json" <<EOF
{
  "pebble": {
    "listenAddress": "$TESTHOST_GW:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:15000",
    "certificate": "$A/pebble.pem",
    "privateKey": "$A/pebble.key",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF
  (exec setsid pebble-challtestsrv -defaultIPv4 "" -defaultIPv6 "" -dns01 127.0.0.1:8053 \
     -http01 "" -https01 "" -tlsalpn01 "" -management 127.0.0.1:8055 </dev/null >"$A/challtestsrv.log" 2>&1) &
  echo $! >"$A/challtestsrv.pid"
  (export PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0
   exec setsid pebble -config "$A/pebble-config.json" -dnsserver 127.0.0.1:8053 </dev/null >"$A/pebble.log" 2>&1) &
  echo $! >"$A/pebble.pid"
  # Up to 60 s: on a busy machine pebble takes seconds to generate its CA before it listens.
  local i; for i in $(seq 600); do
    curl -fsS --cacert "$A/ca.pem" "https://$TESTHOST_GW:$PEBBLE_PORT/dir" >/dev/null 2>&1 && break
    kill -0 "$(cat "$A/pebble.pid")" 2>/dev/null || break
    sleep 0.1
  done
  curl -fsS --cacert "$A/ca.pem" "https://$TESTHOST_GW:$PEBBLE_PORT/dir" >/dev/null || die "pebble not answering, see $A/pebble.log"
  # register names of hosts that are already up
  local x; for x in "$RUN"/*/; do [[ -f $x/ip ]] && cmd_acme_dns "$(basename "$x").$TESTHOST_DOMAIN" "$(cat "$x/ip")"; done
  log "pebble: https://$TESTHOST_GW:$PEBBLE_PORT/dir (API CA: $A/ca.pem), DNS 127.0.0.1:8053"
}
cmd_acme_dns() {
  curl -fsS -X POST -d "{\"host\":\"${1%.}.\",\"addresses\":[\"$2\"]}" http://127.0.0.1:8055/add-a >/dev/null
}
cmd_acme_down() {
  local A=$TESTHOST_HOME/acme p f comm
  for f in pebble challtestsrv; do
    [[ -f $A/$f.pid ]] || continue
    p=$(cat "$A/$f.pid")
    comm=pebble; [[ $f == challtestsrv ]] && comm=pebble-challtes   # /proc/PID/comm is cut at 15 chars
    if pid_alive "$p" "$comm"; then
      kill "$p"; for _ in $(seq 50); do pid_alive "$p" || break; sleep 0.1; done
    fi
    rm -f "$A/$f.pid"
  done
  with_lock net_down_if_idle
}

cmd_deps() {
  apt-get update -q >/dev/null
  # policy-rc.d may block it anyway: the packaged apt-cacher-ng daemon is not used (own instance, own port)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${DEPS[@]}" >/dev/null
  dpkg-query -W -f '${Package} ${Version}\n' "${DEPS[@]}"
}

[[ $EUID == 0 ]] || die "must run as root"
case ${1:-} in
  deps) cmd_deps ;;
  build) cmd_build >/dev/null ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  reboot) shift; cmd_reboot "$@" ;;
  status) cmd_status ;;
  inventory) cmd_inventory ;;
  ssh) shift; cmd_ssh "$@" ;;
  acme-up) cmd_acme_up ;;
  acme-dns) shift; cmd_acme_dns "$@" ;;
  acme-down) cmd_acme_down ;;
  _customize) shift; _customize "$@" ;;
  *) sed -n '2,19p' "$SELF"; exit 2 ;;
esac
