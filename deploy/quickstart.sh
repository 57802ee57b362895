#!/usr/bin/env bash
#
# One command brings the whole Aegir control plane up on this machine:
# backing services (PostgreSQL, RabbitMQ, MariaDB, nginx, php-fpm), the
# database, directories, a release build, the five services, and finally
# @server_master saved and verified through the CLI.
#
#   deploy/quickstart.sh           start everything (same as "start")
#   deploy/quickstart.sh stop      stop the five Aegir services
#   deploy/quickstart.sh status    show the five Aegir services
#   deploy/quickstart.sh restart   stop, then start
#
# Runs as root on Debian 12; needs no systemd. Safe to run again: whatever
# is installed, created or running already is left as it is.

set -euo pipefail

# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------------------
# Configuration: every setting the services receive is defined here.
# Values already present in the environment take precedence.
# ---------------------------------------------------------------------------

DATABASE_NAME=aegir
AMQP_URL="${AEGIR_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
LOG_FORMAT="${AEGIR_LOG_FORMAT:-text}"
LOG_FILTER="${RUST_LOG:-info}"
DATABASE_URL="${AEGIR_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/${DATABASE_NAME}}"
API_LISTEN="${AEGIR_API_LISTEN:-127.0.0.1:8090}"
API_URL="${AEGIR_API:-http://${API_LISTEN}}"
PLATFORM_ROOTS="${AEGIR_PLATFORM_ROOTS:-/var/aegir/platforms}"
# Where site archives go: a directory, or s3://bucket/prefix with AEGIR_S3_* settings.
BACKUP_STORE="${AEGIR_BACKUP_STORE:-file:///var/aegir/backups}"
SERVER="${AEGIR_SERVER:-server_master}"
HTTP_CONFIG_DIR="${AEGIR_HTTP_CONFIG_DIR:-/var/aegir/config/${SERVER}}"
NGINX_CONF="${AEGIR_NGINX_CONF:-}"
WEB_GROUP="${AEGIR_WEB_GROUP:-www-data}"
SCRIPT_USER="${AEGIR_SCRIPT_USER:-aegir}"
HTTP_WORKER_HEALTH=127.0.0.1:8091
DB_WORKER_HEALTH=127.0.0.1:8092
BACKUP_WORKER_HEALTH=127.0.0.1:8093

NGINX_INCLUDE=/etc/nginx/conf.d/aegir.conf
# Signing keys: the master key (task-api and the scheduler only) and this server's
# workers' key, derived from it. Every message is signed; nothing unsigned is acted on.
KEY_DIR="${AEGIR_KEY_DIR:-/etc/aegir/keys}"
MASTER_KEY_FILE="${KEY_DIR}/master.key"
WORKER_KEY_FILE="${KEY_DIR}/${SERVER}.key"
# The API token of user `admin`, written by task-api at its first start (mode 0600);
# the CLI here reads it with AEGIR_TOKEN_FILE.
ADMIN_TOKEN_FILE="${AEGIR_BOOTSTRAP_ADMIN_TOKEN_FILE:-${KEY_DIR}/admin.token}"
RUN_DIR=/run/aegir
LOG_DIR=/var/log/aegir

# Start order; stop runs in reverse.
SERVICES=(task-api scheduler http-worker db-worker backup-worker)

# service_env NAME: sets SERVICE_ENV to the NAME=VALUE settings of a service.
service_env() {
    SERVICE_ENV=(
        "AEGIR_AMQP_URL=${AMQP_URL}"
        "AEGIR_LOG_FORMAT=${LOG_FORMAT}"
        "RUST_LOG=${LOG_FILTER}"
    )
    case "$1" in
    task-api)
        SERVICE_ENV+=(
            "AEGIR_SIGNING_KEY_FILE=${MASTER_KEY_FILE}"
            "AEGIR_DATABASE_URL=${DATABASE_URL}"
            "AEGIR_API_LISTEN=${API_LISTEN}"
            "AEGIR_PLATFORM_ROOTS=${PLATFORM_ROOTS}"
            "AEGIR_BOOTSTRAP_ADMIN_TOKEN_FILE=${ADMIN_TOKEN_FILE}"
        )
        ;;
    scheduler)
        SERVICE_ENV+=("AEGIR_SIGNING_KEY_FILE=${MASTER_KEY_FILE}" "AEGIR_DATABASE_URL=${DATABASE_URL}")
        ;;
    http-worker)
        SERVICE_ENV+=(
            "AEGIR_SERVER=${SERVER}"
            "AEGIR_WORKER_KEY_FILE=${WORKER_KEY_FILE}"
            "AEGIR_HEALTH_LISTEN=${HTTP_WORKER_HEALTH}"
            "AEGIR_HTTP_CONFIG_DIR=${HTTP_CONFIG_DIR}"
            "AEGIR_PLATFORM_ROOTS=${PLATFORM_ROOTS}"
            "AEGIR_WEB_GROUP=${WEB_GROUP}"
            "AEGIR_SCRIPT_USER=${SCRIPT_USER}"
        )
        if [[ -n "${NGINX_CONF}" ]]; then
            SERVICE_ENV+=("AEGIR_NGINX_CONF=${NGINX_CONF}")
        fi
        ;;
    db-worker)
        SERVICE_ENV+=(
            "AEGIR_SERVER=${SERVER}"
            "AEGIR_WORKER_KEY_FILE=${WORKER_KEY_FILE}"
            "AEGIR_HEALTH_LISTEN=${DB_WORKER_HEALTH}"
            "AEGIR_BACKUP_STORE=${BACKUP_STORE}"
        )
        ;;
    backup-worker)
        SERVICE_ENV+=(
            "AEGIR_SERVER=${SERVER}"
            "AEGIR_WORKER_KEY_FILE=${WORKER_KEY_FILE}"
            "AEGIR_HEALTH_LISTEN=${BACKUP_WORKER_HEALTH}"
            "AEGIR_BACKUP_STORE=${BACKUP_STORE}"
            "AEGIR_PLATFORM_ROOTS=${PLATFORM_ROOTS}"
        )
        ;;
    *) aegir_die "unknown service: $1" ;;
    esac
}

# health_url NAME: prints the health endpoint of a service (none for the
# scheduler).
health_url() {
    case "$1" in
    task-api) printf 'http://%s/healthz\n' "${API_LISTEN}" ;;
    http-worker) printf 'http://%s/healthz\n' "${HTTP_WORKER_HEALTH}" ;;
    db-worker) printf 'http://%s/healthz\n' "${DB_WORKER_HEALTH}" ;;
    backup-worker) printf 'http://%s/healthz\n' "${BACKUP_WORKER_HEALTH}" ;;
    *) return 0 ;;
    esac
}

BIN_DIR="$(aegir_target_dir)/release"

# ---------------------------------------------------------------------------
# Process handling
# ---------------------------------------------------------------------------

pid_file() {
    printf '%s/%s.pid\n' "${RUN_DIR}" "$1"
}

# service_pid NAME: prints the pid of the running service, or fails. A pid
# file whose process is gone, or now belongs to another program, does not
# count.
service_pid() {
    local name="$1" file pid comm
    file="$(pid_file "${name}")"
    [[ -r "${file}" ]] || return 1
    pid="$(<"${file}")"
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    kill -0 "${pid}" 2>/dev/null || return 1
    comm="$(cat "/proc/${pid}/comm" 2>/dev/null || true)"
    [[ "${comm}" == "${name:0:15}" ]] || return 1
    printf '%s\n' "${pid}"
}

log_tail() {
    local log="${LOG_DIR}/$1.log"
    if [[ -f "${log}" ]]; then
        printf -- '--- last lines of %s ---\n' "${log}" >&2
        tail -n 30 "${log}" >&2
        printf -- '---\n' >&2
    fi
}

start_service() {
    local name="$1" pid bin log
    if pid="$(service_pid "${name}")"; then
        aegir_log "${name}: already running (pid ${pid}); '$0 restart' runs the new build"
        return 0
    fi
    bin="${BIN_DIR}/${name}"
    [[ -x "${bin}" ]] || aegir_die "${name}: binary ${bin} not found; did the build succeed?"
    service_env "${name}"
    log="${LOG_DIR}/${name}.log"
    printf '\n=== %s: starting %s ===\n' "$(date -Is)" "${name}" >>"${log}"
    setsid nohup env "${SERVICE_ENV[@]}" "${bin}" >>"${log}" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "${pid}" >"$(pid_file "${name}")"
    aegir_log "${name}: started (pid ${pid}, log ${log})"
}

# wait_service NAME SECONDS: waits until the service answers on its health
# endpoint (or, without one, is still alive after a few seconds).
wait_service() {
    local name="$1" timeout="$2" url pid deadline
    url="$(health_url "${name}")"
    pid="$(<"$(pid_file "${name}")")"
    deadline=$((SECONDS + timeout))
    if [[ -z "${url}" ]]; then
        sleep 3
        if ! kill -0 "${pid}" 2>/dev/null; then
            log_tail "${name}"
            aegir_die "${name} exited right after starting"
        fi
        aegir_log "${name}: running"
        return 0
    fi
    until curl -fsS -m 2 -o /dev/null "${url}" 2>/dev/null; do
        if ! kill -0 "${pid}" 2>/dev/null; then
            log_tail "${name}"
            aegir_die "${name} exited before answering on ${url}"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "${name}"
            aegir_die "${name} did not answer on ${url} within ${timeout}s"
        fi
        sleep 1
    done
    aegir_log "${name}: healthy (${url})"
}

stop_service() {
    local name="$1" pid file deadline
    file="$(pid_file "${name}")"
    if ! pid="$(service_pid "${name}")"; then
        rm -f "${file}"
        aegir_log "${name}: not running"
        return 0
    fi
    aegir_log "${name}: stopping (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while kill -0 "${pid}" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            aegir_warn "${name}: still running after 20s, sending KILL"
            kill -KILL "${pid}" 2>/dev/null || true
            break
        fi
        sleep 1
    done
    rm -f "${file}"
    aegir_log "${name}: stopped"
}

# ---------------------------------------------------------------------------
# Host configuration
# ---------------------------------------------------------------------------

# Makes the system nginx include the base config the http-worker writes.
configure_nginx() {
    local base="${HTTP_CONFIG_DIR}/nginx.conf" wanted
    install -d -m 0755 "${HTTP_CONFIG_DIR}" "${HTTP_CONFIG_DIR}/vhost.d"
    if [[ -n "${NGINX_CONF}" ]]; then
        aegir_log "nginx: AEGIR_NGINX_CONF=${NGINX_CONF} is set; the http-worker manages that nginx, ${NGINX_INCLUDE} is not written"
        return 0
    fi
    [[ -e "${base}" ]] || : >"${base}"
    wanted="$(printf '# Aegir: base config of @%s, written by the http-worker.\ninclude %s;' "${SERVER}" "${base}")"
    if [[ ! -f "${NGINX_INCLUDE}" || "$(<"${NGINX_INCLUDE}")" != "${wanted}" ]]; then
        aegir_log "nginx: writing ${NGINX_INCLUDE}"
        printf '%s\n' "${wanted}" >"${NGINX_INCLUDE}"
    fi
    nginx -t -q || aegir_die "nginx -t failed with ${NGINX_INCLUDE} in place"
    nginx -s reload
    aegir_log "nginx: configuration loaded"
}

ensure_platform_roots() {
    local root roots
    IFS=: read -r -a roots <<<"${PLATFORM_ROOTS}"
    for root in "${roots[@]}"; do
        [[ -n "${root}" ]] && install -d -m 0755 "${root}"
    done
    return 0
}

# ---------------------------------------------------------------------------
# Demo site: a WordPress platform from Debian's package and one site on it
# ---------------------------------------------------------------------------

DEMO_PLATFORM=platform_wordpress
DEMO_ROOT="${PLATFORM_ROOTS%%:*}/wordpress"
DEMO_SITE="${AEGIR_DEMO_SITE:-aegir-demo.localhost}"
DEMO_TITLE="Aegir demo site"

# ensure_keys: makes the master key once, and this server's workers' key from it;
# both readable by root only.
ensure_keys() {
    install -d -m 0700 "${KEY_DIR}"
    if [[ ! -s "${MASTER_KEY_FILE}" ]]; then
        (umask 077 && "${BIN_DIR}/aegir" keys new >"${MASTER_KEY_FILE}.new")
        mv "${MASTER_KEY_FILE}.new" "${MASTER_KEY_FILE}"
        aegir_log "keys: made the master signing key ${MASTER_KEY_FILE}"
    fi
    (umask 077 && AEGIR_SIGNING_KEY_FILE="${MASTER_KEY_FILE}" "${BIN_DIR}/aegir" keys server "@${SERVER}" >"${WORKER_KEY_FILE}.new")
    mv "${WORKER_KEY_FILE}.new" "${WORKER_KEY_FILE}"
}

aegir_cli() {
    AEGIR_API="${API_URL}" AEGIR_TOKEN_FILE="${ADMIN_TOKEN_FILE}" "${BIN_DIR}/aegir" "$@"
}

# The web UI signs people in with a password: admin gets a random one, kept in a file
# only root reads, the first time (an existing file is left as it is).
ensure_admin_password() {
    local file="${KEY_DIR}/admin.password"
    [[ -s "${file}" ]] && return 0
    aegir_log "accounts: setting a password for user admin (${file})"
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"${file}")
    aegir_cli users save admin --role admin --password-stdin <"${file}" >/dev/null ||
        aegir_die "cannot set the password of user admin; see ${LOG_DIR}/task-api.log"
}

demo_site() {
    local status
    if [[ ! -d "${DEMO_ROOT}" ]]; then
        aegir_log "demo: copying WordPress from /usr/share/wordpress to ${DEMO_ROOT}"
        # Debian links parts of WordPress to /etc and /var/lib: copy real files, and
        # leave out Debian's own config dispatch, which the platform replaces.
        cp -rL /usr/share/wordpress "${DEMO_ROOT}"
        rm -f "${DEMO_ROOT}/wp-config.php" "${DEMO_ROOT}/.htaccess"
    fi
    aegir_cli save "@${DEMO_PLATFORM}" --context_type=platform --root="${DEMO_ROOT}" --web_server="@${SERVER}" ||
        aegir_die "aegir save @${DEMO_PLATFORM} failed"
    aegir_cli "@${DEMO_PLATFORM}" verify || aegir_die "verify of @${DEMO_PLATFORM} failed; see ${LOG_DIR}/"

    # 404 until the site is saved: no status then.
    # The token goes through stdin (printf is a builtin), not onto curl's command line.
    status="$(printf 'header = "Authorization: Bearer %s"\n' "$(cat "${ADMIN_TOKEN_FILE}")" |
        curl -K - -fsS -m 5 "${API_URL}/api/v1/sites/${DEMO_SITE}" 2>/dev/null |
        sed -n 's/.*"status":"\([a-z]*\)".*/\1/p' || true)"
    if [[ "${status}" == enabled ]]; then
        aegir_log "demo: @${DEMO_SITE} is installed already"
    else
        aegir_cli save "@${DEMO_SITE}" --context_type=site --platform="@${DEMO_PLATFORM}" \
            --db_server="@${SERVER}" --title="${DEMO_TITLE}" || aegir_die "aegir save @${DEMO_SITE} failed"
        aegir_cli "@${DEMO_SITE}" install || aegir_die "install of @${DEMO_SITE} failed; see ${LOG_DIR}/"
    fi
    aegir_wait_for "the demo site to answer" 30 demo_answers ||
        aegir_die "the demo site does not answer on http://127.0.0.1/ with Host: ${DEMO_SITE}"
    aegir_log "demo: @${DEMO_SITE} answers over HTTP"
}

# Whether the demo site itself answers: its own page, not merely a 200 from port 80,
# where the distribution's default site answers any name nginx does not serve yet.
demo_answers() {
    local page
    page="$(curl -fsS -m 5 -H "Host: ${DEMO_SITE}" http://127.0.0.1/)" && [[ "${page}" == *"${DEMO_TITLE}"* ]]
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

cmd_start() {
    local master_db name
    aegir_require_root

    aegir_install_packages
    aegir_start_backing_services
    aegir_ensure_database "${DATABASE_NAME}"
    aegir_ensure_dirs
    ensure_platform_roots
    master_db="$(aegir_master_db_url)"
    configure_nginx

    aegir_build --release
    ensure_keys

    for name in "${SERVICES[@]}"; do
        start_service "${name}"
    done
    wait_service task-api 60
    for name in scheduler http-worker db-worker backup-worker; do
        wait_service "${name}" 60
    done

    aegir_log "registering @${SERVER} (aegir save)"
    aegir_cli save "@${SERVER}" \
        --context_type=server \
        --remote_host=localhost \
        --http_service_type=nginx \
        --http_port=80 \
        --db_service_type=mariadb \
        --master_db="${master_db}" ||
        aegir_die "aegir save @${SERVER} failed; see ${LOG_DIR}/task-api.log"

    aegir_log "verifying @${SERVER} (aegir @${SERVER} verify)"
    if ! aegir_cli "@${SERVER}" verify; then
        aegir_die "verify of @${SERVER} failed; worker logs are in ${LOG_DIR}/"
    fi

    ensure_admin_password
    demo_site

    cat <<EOF

Aegir is up, @${SERVER} is verified, and a demo WordPress site is installed.

  Demo site  http://${DEMO_SITE}/   (or: curl -H 'Host: ${DEMO_SITE}' http://127.0.0.1/)

  Web UI     ${API_URL}/   (user admin, password in ${KEY_DIR}/admin.password)
  API        ${API_URL}/api/v1
  OpenAPI    ${API_URL}/api/openapi.json
  Metrics    ${API_URL}/metrics
  CLI        ${BIN_DIR}/aegir   (AEGIR_API=${API_URL} AEGIR_TOKEN_FILE=${ADMIN_TOKEN_FILE})
  Admin      the API token of user admin is in ${ADMIN_TOKEN_FILE}
  Logs       ${LOG_DIR}/<service>.log
  Pid files  ${RUN_DIR}/<service>.pid

  Status     $0 status
  Stop       $0 stop
EOF
}

cmd_stop() {
    local i
    aegir_require_root
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
        stop_service "${SERVICES[i]}"
    done
}

cmd_status() {
    local name pid url health
    printf '%-14s %-8s %-8s %s\n' SERVICE STATE PID HEALTH
    for name in "${SERVICES[@]}"; do
        url="$(health_url "${name}")"
        if pid="$(service_pid "${name}")"; then
            health="-"
            if [[ -n "${url}" ]]; then
                if curl -fsS -m 2 -o /dev/null "${url}" 2>/dev/null; then
                    health="ok ${url}"
                else
                    health="failing ${url}"
                fi
            fi
            printf '%-14s %-8s %-8s %s\n' "${name}" running "${pid}" "${health}"
        else
            printf '%-14s %-8s %-8s %s\n' "${name}" stopped - -
        fi
    done
}

usage() {
    cat <<EOF
usage: $0 [start|stop|status|restart]

  start    install and start backing services, build, start the Aegir
           services and verify @${SERVER} (default)
  stop     stop the Aegir services (task-api, scheduler, workers)
  status   list the Aegir services and their health
  restart  stop, then start
EOF
}

case "${1:-start}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
restart)
    cmd_stop
    cmd_start
    ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
