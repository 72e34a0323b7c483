#!/usr/bin/env bash
# A real one-node Slurm cluster for tests and CI.
#
#   ci/slurm-testbed.sh up       start munged (if needed), slurmctld, slurmd;
#                                wait until the node is idle (idempotent)
#   ci/slurm-testbed.sh down     cancel jobs, stop slurmd and slurmctld (and
#                                munged if `up` started it); keeps the logs
#   ci/slurm-testbed.sh status   exit 0 if the node answers idle/mixed/allocated
#   ci/slurm-testbed.sh env      print shell exports; use as
#                                  eval "$(ci/slurm-testbed.sh env)"
#
# Needs root and the packages from ci/install-deps.sh.  Configuration comes
# from the templates in slurm/testbed/ and is written, with all state, spool,
# pid and log files, under $PSEG_TESTBED_DIR (default /tmp/pseg-slurm-testbed).
# Nothing in /etc/slurm is used or changed; the only system-wide things are
# the munge key (/etc/munge/munge.key, created if absent) and munged.
#
# Environment overrides:
#   PSEG_TESTBED_DIR              scratch directory
#   PSEG_TESTBED_SLURMCTLD_PORT   default 6817
#   PSEG_TESTBED_SLURMD_PORT      default 6818
#   PSEG_TESTBED_UP_TIMEOUT       seconds to wait for the node (default 60)
#   PSEG_TESTBED_MIN_JOB_AGE      MinJobAge in seconds (default 60)
#   PSEG_TESTBED_REAL_MEMORY_MB   node RealMemory (default: a bit under
#                                 MemAvailable)
#   PSEG_TESTBED_CGROUP           auto (default) | v1 | none
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly TEMPLATE_DIR="$REPO_ROOT/slurm/testbed"

readonly TESTBED_DIR="${PSEG_TESTBED_DIR:-/tmp/pseg-slurm-testbed}"
readonly CONF_DIR="$TESTBED_DIR/etc"
readonly CONF="$CONF_DIR/slurm.conf"
readonly ENV_FILE="$CONF_DIR/testbed.env"
readonly RUN_DIR="$TESTBED_DIR/run"
readonly LOG_DIR="$TESTBED_DIR/log"
readonly CTLD_PIDFILE="$RUN_DIR/slurmctld.pid"
readonly SLURMD_PIDFILE="$RUN_DIR/slurmd.pid"
readonly MUNGE_MARKER="$RUN_DIR/munged.started-by-testbed"

readonly NODE_NAME=localhost
readonly CTLD_PORT="${PSEG_TESTBED_SLURMCTLD_PORT:-6817}"
readonly SLURMD_PORT="${PSEG_TESTBED_SLURMD_PORT:-6818}"
readonly UP_TIMEOUT="${PSEG_TESTBED_UP_TIMEOUT:-60}"
readonly MIN_JOB_AGE="${PSEG_TESTBED_MIN_JOB_AGE:-60}"
readonly CGROUP_MODE="${PSEG_TESTBED_CGROUP:-auto}"

readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_PIDFILE=/run/munge/munged.pid
readonly MEMCG=/sys/fs/cgroup/memory

log() { echo "slurm-testbed: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

usage() {
    echo "usage: $0 up|down|status|env" >&2
    exit 2
}

# --- helpers ---------------------------------------------------------------

need_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (CI does); tests that need Slurm skip otherwise"
}

need_cmds() {
    local missing=() c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    [[ ${#missing[@]} -eq 0 ]] || die "missing commands: ${missing[*]} (run ci/install-deps.sh)"
}

# pid_of NAME PIDFILE: print the pid of our daemon NAME (started with
# -f $CONF), from its pid file or, failing that, from the process table.
pid_of() {
    local name=$1 pidfile=$2 pid=""
    if [[ -r "$pidfile" ]]; then
        pid=$(tr -dc '0-9' <"$pidfile")
        if [[ -n "$pid" ]] && is_our_daemon "$pid" "$name"; then
            echo "$pid"
            return 0
        fi
    fi
    for pid in $(live_pids "$name"); do
        if is_our_daemon "$pid" "$name"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# is_our_daemon PID NAME: PID is a live NAME process whose command line has
# our config file.
is_our_daemon() {
    local pid=$1 name=$2 cmd
    alive "$pid" || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ "$cmd" == *"$name"* && "$cmd" == *" $CONF"* ]]
}

# alive PID: the process exists and is not a zombie waiting to be reaped
# (the daemons' parent is init, which may reap late).  A zombie leader with
# other threads still running is alive.
alive() {
    local stat tasks
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ "${stat:0:1}" != Z ]] && return 0
    tasks=$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    ((tasks > 1))
}

# live_pids NAME: pids of live (not zombie) processes named NAME.
live_pids() {
    local pid
    for pid in $(pgrep -x "$1" || true); do
        if alive "$pid"; then echo "$pid"; fi
    done
}

# stop_pid PID NAME: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
    local pid=$1 name=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        alive "$pid" || {
            log "stopped $name (pid $pid)"
            return 0
        }
        sleep 0.1
    done
    log "$name (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    die "$name (pid $pid) would not die"
}

munge_works() {
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1
}

# node_state: the node's state as sinfo reports it ("" if no answer).
node_state() {
    [[ -f "$CONF" ]] || return 0
    # Without our slurmctld, sinfo would only retry for several seconds.
    pid_of slurmctld "$CTLD_PIDFILE" >/dev/null || return 0
    SLURM_CONF="$CONF" timeout 10 sinfo -h -N -n "$NODE_NAME" -o '%T' 2>/dev/null | head -n 1 || true
}

cluster_ready() {
    case "$(node_state)" in
        idle | mixed | allocated | completing) return 0 ;;
        *) return 1 ;;
    esac
}

# --- munge -----------------------------------------------------------------

ensure_munge() {
    id munge >/dev/null 2>&1 || die "no 'munge' user (is the munge package installed?)"
    if [[ ! -s "$MUNGE_KEY" ]]; then
        install -d -o munge -g munge -m 0700 /etc/munge
        (
            umask 077
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        )
        chown munge:munge "$MUNGE_KEY"
        chmod 0400 "$MUNGE_KEY"
        log "created $MUNGE_KEY (1024 random bytes, munge, 0400)"
    fi

    if munge_works; then
        return 0
    fi

    local pid
    pid=$(live_pids munged | head -n 1)
    if [[ -n "$pid" ]]; then
        die "munged (pid $pid) is running but 'munge -n | unmunge' fails; see /var/log/munge/munged.log"
    fi

    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged 9>&-
    local i
    for ((i = 0; i < 100; i++)); do
        if munge_works && [[ -s "$MUNGE_PIDFILE" ]]; then
            mkdir -p "$RUN_DIR"
            tr -dc '0-9' <"$MUNGE_PIDFILE" >"$MUNGE_MARKER"
            log "started munged (pid $(cat "$MUNGE_MARKER"))"
            return 0
        fi
        sleep 0.1
    done
    die "munged started but 'munge -n | unmunge' still fails; see /var/log/munge/munged.log"
}

stop_munge_if_ours() {
    [[ -f "$MUNGE_MARKER" ]] || return 0
    local pid
    pid=$(tr -dc '0-9' <"$MUNGE_MARKER")
    if [[ -n "$pid" ]] && alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == munged ]]; then
        stop_pid "$pid" munged
    fi
    rm -f "$MUNGE_MARKER"
}

# --- configuration -----------------------------------------------------------

# cgroup_mode: v1 when the cgroup v1 memory and freezer controllers are
# mounted under /sys/fs/cgroup, else none.
cgroup_mode() {
    case "$CGROUP_MODE" in
        v1 | none)
            echo "$CGROUP_MODE"
            ;;
        auto)
            if [[ -f "$MEMCG/memory.limit_in_bytes" && -f /sys/fs/cgroup/freezer/cgroup.procs ]]; then
                echo v1
            else
                echo none
            fi
            ;;
        *) die "PSEG_TESTBED_CGROUP must be auto, v1 or none (got '$CGROUP_MODE')" ;;
    esac
}

real_memory_mb() {
    if [[ -n "${PSEG_TESTBED_REAL_MEMORY_MB:-}" ]]; then
        echo "$PSEG_TESTBED_REAL_MEMORY_MB"
        return
    fi
    local avail_kb avail_mb margin
    avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
    avail_mb=$((avail_kb / 1024))
    # A bit under what is available: 5%, at least 256 MB.
    margin=$((avail_mb / 20))
    ((margin >= 256)) || margin=256
    local mb=$((avail_mb - margin))
    ((mb >= 512)) || die "only ${avail_mb} MB available; need at least 768 MB"
    echo "$mb"
}

render() {
    local template=$1 out=$2
    shift 2
    [[ -r "$template" ]] || die "missing template $template"
    local args=() kv
    for kv in "$@"; do
        args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${args[@]}" "$template" >"$out.tmp"
    if grep -q '@[A-Z_]*@' "$out.tmp"; then
        die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out.tmp" | sort -u | tr '\n' ' ')"
    fi
    mv -f "$out.tmp" "$out"
}

write_config() {
    [[ "$TESTBED_DIR" == /* ]] || die "PSEG_TESTBED_DIR must be absolute (got '$TESTBED_DIR')"
    [[ "$TESTBED_DIR" != *[[:space:]\|\&\\]* ]] || die "PSEG_TESTBED_DIR must not contain spaces, '|', '&' or '\\'"
    mkdir -p "$CONF_DIR" "$TESTBED_DIR/state" "$TESTBED_DIR/spool/slurmd" "$RUN_DIR" "$LOG_DIR"

    local mode cpus mem proctrack task jobacct swap="no" enforced=0
    mode=$(cgroup_mode)
    cpus=$(nproc)
    mem=$(real_memory_mb)
    if [[ "$mode" == v1 ]]; then
        proctrack=proctrack/cgroup
        task=task/cgroup
        jobacct=jobacct_gather/cgroup
        enforced=1
        if [[ -f "$MEMCG/memory.memsw.limit_in_bytes" ]]; then
            swap=yes
        elif [[ -n "$(swapon --show --noheadings 2>/dev/null || true)" ]]; then
            log "WARNING: swap is on but the kernel has no swap accounting (memory.memsw.*):"
            log "WARNING: a job over --mem may swap instead of being OOM-killed"
        fi
        render "$TEMPLATE_DIR/cgroup.conf.in" "$CONF_DIR/cgroup.conf" "CONSTRAIN_SWAP=$swap"
    else
        log "WARNING: cgroup mode 'none' (PSEG_TESTBED_CGROUP=$CGROUP_MODE; cgroup v1 memory and freezer at /sys/fs/cgroup needed for v1): --mem is NOT enforced"
        proctrack=proctrack/linuxproc
        task=task/none
        jobacct=jobacct_gather/linux
        rm -f "$CONF_DIR/cgroup.conf"
    fi
    : >"$CONF_DIR/plugstack.conf"

    render "$TEMPLATE_DIR/slurm.conf.in" "$CONF" \
        "TESTBED_DIR=$TESTBED_DIR" \
        "SLURMCTLD_PORT=$CTLD_PORT" \
        "SLURMD_PORT=$SLURMD_PORT" \
        "CPUS=$cpus" \
        "REAL_MEMORY_MB=$mem" \
        "MIN_JOB_AGE=$MIN_JOB_AGE" \
        "PROCTRACK_TYPE=$proctrack" \
        "TASK_PLUGIN=$task" \
        "JOBACCT_GATHER_TYPE=$jobacct"

    {
        printf 'export SLURM_CONF=%q\n' "$CONF"
        printf 'export PSEG_TESTBED_DIR=%q\n' "$TESTBED_DIR"
        printf 'export PSEG_TESTBED_MEMORY_ENFORCED=%q\n' "$enforced"
    } >"$ENV_FILE"
    log "wrote $CONF (CPUs=$cpus RealMemory=${mem}MB cgroup=$mode ConstrainSwapSpace=$swap)"
}

check_hostname() {
    local h
    h=$(hostname)
    if ! getent hosts "$h" >/dev/null 2>&1; then
        log "WARNING: this host's name '$h' does not resolve; the test cluster only uses"
        log "WARNING: 'localhost'/127.0.0.1, but if srun or sbatch fail, add '127.0.1.1 $h' to /etc/hosts"
    fi
}

# --- commands ------------------------------------------------------------------

cmd_up() {
    need_root
    need_cmds slurmctld slurmd sinfo munge unmunge munged pgrep runuser flock
    mkdir -p "$TESTBED_DIR"
    exec 9>"$TESTBED_DIR/.lock"
    flock -w 120 9 || die "another '$0' holds $TESTBED_DIR/.lock"

    local t0=$SECONDS
    ensure_munge

    if cluster_ready; then
        log "already up (node $NODE_NAME: $(node_state)); SLURM_CONF=$CONF"
        return 0
    fi

    # Our daemons may be running but not ready (or half up): start over.
    local pid
    if pid=$(pid_of slurmd "$SLURMD_PIDFILE"); then stop_pid "$pid" slurmd; fi
    if pid=$(pid_of slurmctld "$CTLD_PIDFILE"); then stop_pid "$pid" slurmctld; fi

    check_hostname
    write_config

    # -c: start from a clean state (no jobs from an earlier run; job ids
    # restart at 1).
    SLURM_CONF="$CONF" slurmctld -f "$CONF" -c 9>&- ||
        die "slurmctld failed to start; see $LOG_DIR/slurmctld.log"
    SLURM_CONF="$CONF" slurmd -f "$CONF" 9>&- ||
        die "slurmd failed to start; see $LOG_DIR/slurmd.log"

    local deadline=$((SECONDS + UP_TIMEOUT)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state)
        case "$state" in
            idle | mixed | allocated | completing)
                log "up in $((SECONDS - t0)) s (node $NODE_NAME: $state); SLURM_CONF=$CONF"
                return 0
                ;;
        esac
        sleep 0.5
    done
    log "node $NODE_NAME not idle after ${UP_TIMEOUT} s (state: '${state:-no answer}')"
    log "--- tail of $LOG_DIR/slurmctld.log"
    tail -n 30 "$LOG_DIR/slurmctld.log" >&2 || true
    log "--- tail of $LOG_DIR/slurmd.log"
    tail -n 30 "$LOG_DIR/slurmd.log" >&2 || true
    die "cluster did not come up"
}

cmd_down() {
    need_root
    mkdir -p "$TESTBED_DIR"
    exec 9>"$TESTBED_DIR/.lock"
    flock -w 120 9 || die "another '$0' holds $TESTBED_DIR/.lock"

    local ctld_pid="" slurmd_pid=""
    ctld_pid=$(pid_of slurmctld "$CTLD_PIDFILE") || true
    slurmd_pid=$(pid_of slurmd "$SLURMD_PIDFILE") || true

    # Cancel whatever still runs so that no slurmstepd outlives slurmd.
    if [[ -n "$ctld_pid" && -n "$slurmd_pid" ]]; then
        local jobs=() i
        mapfile -t jobs < <(SLURM_CONF="$CONF" timeout 10 squeue -h -o '%i' 2>/dev/null || true)
        if [[ ${#jobs[@]} -gt 0 ]]; then
            log "cancelling jobs: ${jobs[*]}"
            SLURM_CONF="$CONF" timeout 10 scancel "${jobs[@]}" || true
            for ((i = 0; i < 60; i++)); do
                [[ -z "$(SLURM_CONF="$CONF" timeout 10 squeue -h -o '%i' 2>/dev/null || true)" ]] && break
                sleep 0.5
            done
        fi
    fi

    [[ -n "$slurmd_pid" ]] && stop_pid "$slurmd_pid" slurmd
    [[ -n "$ctld_pid" ]] && stop_pid "$ctld_pid" slurmctld
    stop_munge_if_ours

    local left
    left=$(live_pids slurmstepd | tr '\n' ' ')
    [[ -z "$left" ]] || log "WARNING: slurmstepd processes still running: $left"
    if [[ -z "$ctld_pid$slurmd_pid" ]]; then
        log "already down"
    else
        log "down (logs kept in $LOG_DIR)"
    fi
}

cmd_status() {
    local state
    state=$(node_state)
    case "$state" in
        idle | mixed | allocated | completing)
            echo "up: node $NODE_NAME $state (SLURM_CONF=$CONF)"
            return 0
            ;;
    esac
    echo "down: node $NODE_NAME state '${state:-no answer}' (SLURM_CONF=$CONF)"
    return 1
}

cmd_env() {
    if [[ -r "$ENV_FILE" ]]; then
        cat "$ENV_FILE"
    else
        printf 'export SLURM_CONF=%q\n' "$CONF"
        printf 'export PSEG_TESTBED_DIR=%q\n' "$TESTBED_DIR"
    fi
}

[[ $# -eq 1 ]] || usage
case "$1" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) usage ;;
esac
