# shellcheck shell=bash
#
# Shared functions for the Aegir deployment scripts (quickstart.sh, test.sh).
#
# Source this file from bash; every function is idempotent and safe under
# `set -euo pipefail`. The functions assume a Debian 12 machine and root,
# and they never rely on systemd: services are started with their own
# commands so the same code works in containers and minimal VMs.

# Repository root (the directory above deploy/).
AEGIR_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Where the backing services are reached. The services and tests use these
# addresses too; they are fixed to the loopback interface.
AEGIR_PG_HOST=127.0.0.1
AEGIR_PG_PORT=5432
AEGIR_MARIADB_HOST=127.0.0.1
AEGIR_MARIADB_PORT=3306

# File where the MariaDB admin URL chosen for the master database server is
# kept (mode 0600), shared by quickstart.sh and test.sh.
AEGIR_QUICKSTART_ENV=/etc/aegir/quickstart.env
# A private CA and RabbitMQ's certificate for amqps:// on loopback (port 5671).
AEGIR_TLS_DIR="${AEGIR_TLS_DIR:-/etc/aegir/tls}"
AEGIR_AMQPS_PORT=5671

# Debian packages the deployment needs on the host.
AEGIR_PACKAGES=(
    rabbitmq-server
    postgresql
    mariadb-server
    mariadb-client
    nginx
    php-fpm
    php-mysql
    curl
    git
    # Real PHP applications for sites, their installers' PHP extensions, and apache
    # (driven through php-fpm with proxy_fcgi, rewrite and env).
    php-cli
    php-xml
    php-mbstring
    php-intl
    php-curl
    php-gd
    wordpress
    wordpress-theme-twentytwentythree
    mediawiki
    apache2
    # The tests' S3-compatible server (moto) runs from a virtualenv.
    python3-venv
    # The backup benchmark's reference archives (`tar | zstd`).
    zstd
    # The dns service: BIND (named, named-checkzone, rndc) and dig for checking answers.
    bind9
    bind9-dnsutils
    # HTTPS: the tests' ACME server (pebble, with pebble-challtestsrv as its DNS) and
    # openssl for its TLS certificate.
    pebble
    openssl
    # The web UI's browser tests drive a headless Chromium over WebDriver.
    chromium
    chromium-driver
)

# Where the tests' moto S3 server is installed, and the moto it installs.
AEGIR_MOTO_VENV=/var/cache/aegir/moto
AEGIR_MOTO_REQUIREMENT='moto[server]>=5,<6'


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------

aegir_log() {
    printf '==> %s\n' "$*" >&2
}

aegir_warn() {
    printf 'warning: %s\n' "$*" >&2
}

aegir_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

aegir_require_root() {
    if [[ "$(id -u)" -ne 0 ]]; then
        aegir_die "this must run as root (it installs packages and starts system services)"
    fi
}

# aegir_wait_for DESCRIPTION SECONDS COMMAND [ARGS...]
# Runs COMMAND once a second until it succeeds or SECONDS have passed.
aegir_wait_for() {
    local what="$1" timeout="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            aegir_warn "gave up waiting for ${what} after ${timeout}s"
            return 1
        fi
        sleep 1
    done
}

# ---------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------

aegir__package_installed() {
    local status
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)"
    [[ "${status}" == ii* ]]
}

# Installs whatever is missing among AEGIR_PACKAGES.
aegir_install_packages() {
    local missing=() pkg
    for pkg in "${AEGIR_PACKAGES[@]}"; do
        aegir__package_installed "${pkg}" || missing+=("${pkg}")
    done
    if ((${#missing[@]} == 0)); then
        aegir_log "packages: all present"
        return 0
    fi
    aegir_require_root
    aegir_log "packages: installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# Installs moto's S3 server (from PyPI, into its own virtualenv) for the backup store's
# tests against a real S3 API, and prints the path of its `moto_server`.
aegir_install_moto() {
    local server="${AEGIR_MOTO_VENV}/bin/moto_server"
    if [[ ! -x "${server}" ]]; then
        aegir_log "moto: installing ${AEGIR_MOTO_REQUIREMENT} into ${AEGIR_MOTO_VENV}"
        python3 -m venv "${AEGIR_MOTO_VENV}" >&2
        "${AEGIR_MOTO_VENV}/bin/pip" install --quiet --disable-pip-version-check "${AEGIR_MOTO_REQUIREMENT}" >&2
    fi
    echo "${server}"
}

# ---------------------------------------------------------------------------
# Backing services
# ---------------------------------------------------------------------------

# Prints "VERSION CLUSTER" of the PostgreSQL cluster on port 5432 (or the
# first cluster), creating a "main" cluster if there is none at all.
aegir__pg_cluster() {
    local clusters line ver name port
    clusters="$(pg_lsclusters --no-header 2>/dev/null || true)"
    if [[ -z "${clusters}" ]]; then
        ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)"
        [[ -n "${ver}" ]] || aegir_die "PostgreSQL server is not installed (no /usr/lib/postgresql/VERSION)"
        aegir_log "postgresql: creating cluster ${ver}/main"
        pg_createcluster "${ver}" main >&2
        clusters="$(pg_lsclusters --no-header)"
    fi
    while read -r ver name port _; do
        if [[ "${port}" == "${AEGIR_PG_PORT}" ]]; then
            printf '%s %s\n' "${ver}" "${name}"
            return 0
        fi
    done <<<"${clusters}"
    line="$(head -n 1 <<<"${clusters}")"
    read -r ver name _ <<<"${line}"
    printf '%s %s\n' "${ver}" "${name}"
}

aegir__pg_ready() {
    pg_isready -q -h "${AEGIR_PG_HOST}" -p "${AEGIR_PG_PORT}"
}

# psql as the postgres superuser over TCP, never prompting for a password.
aegir_psql() {
    PGCONNECT_TIMEOUT=5 psql -w -X -q -h "${AEGIR_PG_HOST}" -p "${AEGIR_PG_PORT}" -U postgres "$@"
}

aegir__pg_connects() {
    aegir_psql -d postgres -Atc 'SELECT 1' >/dev/null 2>&1
}

aegir__start_postgresql() {
    local ver cluster hba found
    found="$(aegir__pg_cluster)"
    read -r ver cluster <<<"${found}"
    if aegir__pg_ready; then
        aegir_log "postgresql: already running"
    else
        aegir_log "postgresql: starting cluster ${ver}/${cluster}"
        pg_ctlcluster --skip-systemctl-redirect "${ver}" "${cluster}" start
    fi
    aegir_wait_for "PostgreSQL on ${AEGIR_PG_HOST}:${AEGIR_PG_PORT}" 60 aegir__pg_ready ||
        aegir_die "PostgreSQL does not answer on ${AEGIR_PG_HOST}:${AEGIR_PG_PORT}"

    # The services connect as "postgres" over 127.0.0.1 without a password.
    # A stock Debian install asks for one, so allow that single case.
    if ! aegir__pg_connects; then
        hba="/etc/postgresql/${ver}/${cluster}/pg_hba.conf"
        [[ -f "${hba}" ]] || aegir_die "cannot connect to PostgreSQL as postgres and ${hba} does not exist"
        if ! grep -q '^host[[:space:]]\+all[[:space:]]\+postgres[[:space:]]\+127\.0\.0\.1/32[[:space:]]\+trust' "${hba}"; then
            aegir_log "postgresql: allowing postgres@127.0.0.1 without password in ${hba}"
            sed -i '1i # Aegir: local superuser access over loopback for the control plane\nhost all postgres 127.0.0.1/32 trust' "${hba}"
        fi
        pg_ctlcluster --skip-systemctl-redirect "${ver}" "${cluster}" reload
        aegir_wait_for "PostgreSQL access as postgres" 15 aegir__pg_connects ||
            aegir_die "cannot connect with: psql -h ${AEGIR_PG_HOST} -U postgres"
    fi
}

aegir__rabbitmq_ready() {
    rabbitmq-diagnostics -q ping
}

aegir__start_rabbitmq() {
    if aegir__rabbitmq_ready >/dev/null 2>&1; then
        aegir_log "rabbitmq: already running"
        return 0
    fi
    if pgrep -u rabbitmq -f 'rabbit boot' >/dev/null 2>&1; then
        aegir_log "rabbitmq: starting up, waiting"
    else
        aegir_log "rabbitmq: starting"
        rabbitmq-server -detached
    fi
    aegir_wait_for "RabbitMQ" 120 aegir__rabbitmq_ready ||
        aegir_die "RabbitMQ does not answer (see /var/log/rabbitmq/)"
}

# A CA of this installation and a certificate it signed for localhost and
# 127.0.0.1; made once. Services trust the CA through SSL_CERT_FILE.
aegir_ensure_tls_files() {
    local dir="${AEGIR_TLS_DIR}"
    [[ -f "${dir}/ca.pem" && -f "${dir}/server.pem" && -f "${dir}/server-key.pem" ]] && return 0
    aegir_log "tls: making a CA and a certificate for localhost in ${dir}"
    install -d -m 0755 "${dir}"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=Aegir local CA" -keyout "${dir}/ca-key.pem" -out "${dir}/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "${dir}/server-key.pem" -out "${dir}/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"${dir}/server.ext"
    openssl x509 -req -in "${dir}/server.csr" -CA "${dir}/ca.pem" -CAkey "${dir}/ca-key.pem" -CAcreateserial \
        -days 3650 -extfile "${dir}/server.ext" -out "${dir}/server.pem" 2>/dev/null
    rm -f "${dir}/server.csr" "${dir}/server.ext"
    chmod 0600 "${dir}/ca-key.pem"
    # RabbitMQ reads its key as its own user.
    if getent group rabbitmq >/dev/null; then
        chgrp rabbitmq "${dir}/server-key.pem"
    fi
    chmod 0640 "${dir}/server-key.pem"
}

aegir__amqps_listening() {
    rabbitmq-diagnostics -q listeners 2>/dev/null | grep -q "port: ${AEGIR_AMQPS_PORT}, protocol: amqp/ssl"
}

# RabbitMQ also listens for amqps:// on 127.0.0.1:5671, with the certificate
# above. The config file keeps it across restarts; a running broker gets the
# listener started in place, so nothing connected to it is dropped.
aegir__ensure_amqps() {
    local conf=/etc/rabbitmq/rabbitmq.conf dir="${AEGIR_TLS_DIR}"
    aegir_ensure_tls_files
    if ! grep -q '^listeners\.ssl\.' "${conf}" 2>/dev/null; then
        aegir_log "rabbitmq: adding the amqps listener 127.0.0.1:${AEGIR_AMQPS_PORT} to ${conf}"
        {
            printf 'listeners.ssl.local = 127.0.0.1:%s\n' "${AEGIR_AMQPS_PORT}"
            printf 'ssl_options.cacertfile = %s/ca.pem\n' "${dir}"
            printf 'ssl_options.certfile = %s/server.pem\n' "${dir}"
            printf 'ssl_options.keyfile = %s/server-key.pem\n' "${dir}"
            printf 'ssl_options.verify = verify_none\n'
            printf 'ssl_options.fail_if_no_peer_cert = false\n'
        } >>"${conf}"
    fi
    aegir__amqps_listening && return 0
    aegir_log "rabbitmq: starting the amqps listener on 127.0.0.1:${AEGIR_AMQPS_PORT}"
    rabbitmqctl -q eval "{ok, _} = application:ensure_all_started(ssl), \
        rabbit_networking:start_ssl_listener({\"127.0.0.1\", ${AEGIR_AMQPS_PORT}}, \
        [{cacertfile, \"${dir}/ca.pem\"}, {certfile, \"${dir}/server.pem\"}, \
         {keyfile, \"${dir}/server-key.pem\"}, {verify, verify_none}, {fail_if_no_peer_cert, false}], 1, 1)." \
        >/dev/null 2>&1 || true
    if ! aegir_wait_for "RabbitMQ's amqps listener" 15 aegir__amqps_listening; then
        aegir_log "rabbitmq: restarting to read ${conf}"
        rabbitmqctl -q stop >/dev/null 2>&1 || true
        rabbitmq-server -detached
        aegir_wait_for "RabbitMQ" 120 aegir__rabbitmq_ready || aegir_die "RabbitMQ does not answer (see /var/log/rabbitmq/)"
        aegir_wait_for "RabbitMQ's amqps listener" 60 aegir__amqps_listening ||
            aegir_die "RabbitMQ does not listen for amqps:// on ${AEGIR_AMQPS_PORT} (see /var/log/rabbitmq/)"
    fi
}

# mariadb-admin ping succeeds as soon as the server answers, even when the
# login itself is refused.
aegir__mariadb_ready() {
    mariadb-admin --protocol=tcp -h "${AEGIR_MARIADB_HOST}" -P "${AEGIR_MARIADB_PORT}" \
        --connect-timeout=2 -u root ping
}

aegir__start_mariadb() {
    if aegir__mariadb_ready >/dev/null 2>&1; then
        aegir_log "mariadb: already running"
        return 0
    fi
    if pgrep -x mariadbd >/dev/null 2>&1 || pgrep -x mysqld >/dev/null 2>&1; then
        aegir_log "mariadb: process present, waiting for it to answer"
    else
        aegir_log "mariadb: starting"
        install -d -o mysql -g mysql -m 0755 /run/mysqld
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    fi
    aegir_wait_for "MariaDB on ${AEGIR_MARIADB_HOST}:${AEGIR_MARIADB_PORT}" 60 aegir__mariadb_ready ||
        aegir_die "MariaDB does not answer on ${AEGIR_MARIADB_HOST}:${AEGIR_MARIADB_PORT} (see /var/log/mysql/)"
}

aegir__start_nginx() {
    if pgrep -x nginx >/dev/null 2>&1; then
        aegir_log "nginx: already running"
        return 0
    fi
    # Installing apache2 (for sites that use it) may have started Debian's own apache
    # on port 80; the master server's web server here is nginx, and the tests run
    # apache instances of their own.
    if pgrep -x apache2 >/dev/null 2>&1; then
        aegir_log "apache2: stopping the instance the package started (it holds port 80)"
        apache2ctl -k stop >/dev/null 2>&1 || true
        aegir_wait_for "apache2 to stop" 15 bash -c '! pgrep -x apache2' || true
    fi
    # Sites with ssl on an apache web server are served over https by mod_ssl.
    if command -v a2enmod >/dev/null 2>&1 && [ ! -e /etc/apache2/mods-enabled/ssl.load ]; then
        aegir_log "apache2: enabling mod_ssl (https for sites with ssl)"
        a2enmod -q ssl >/dev/null || aegir_log "apache2: a2enmod ssl failed; https on apache needs mod_ssl"
    fi
    aegir_log "nginx: starting"
    nginx -t -q || aegir_die "nginx configuration test failed (nginx -t)"
    nginx
    aegir_wait_for "nginx" 15 pgrep -x nginx || aegir_die "nginx did not start (see /var/log/nginx/error.log)"
}

# Prints the installed versioned php-fpm binary, e.g. /usr/sbin/php-fpm8.2.
aegir_php_fpm_bin() {
    local bin
    bin="$(find /usr/sbin -maxdepth 1 -name 'php-fpm*' -type f -perm -u+x 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "${bin}" ]] || return 1
    printf '%s\n' "${bin}"
}

aegir__php_fpm_socket_ready() {
    compgen -G '/run/php/php*-fpm.sock' >/dev/null
}

aegir__start_php_fpm() {
    local bin name
    bin="$(aegir_php_fpm_bin)" || aegir_die "php-fpm is not installed (no /usr/sbin/php-fpm*)"
    name="$(basename "${bin}")"
    # The socket, not a process name: pool processes left behind by a killed master of
    # some other config carry the same name and serve nothing here.
    if aegir__php_fpm_socket_ready && pgrep -f "^php-fpm: master process \(/etc/php/" >/dev/null 2>&1; then
        aegir_log "php-fpm: already running (${name})"
    else
        aegir_log "php-fpm: starting ${name}"
        install -d -m 0755 /run/php
        "${bin}" -t >/dev/null 2>&1 || aegir_die "php-fpm configuration test failed (${bin} -t)"
        "${bin}"
    fi
    aegir_wait_for "php-fpm socket" 15 aegir__php_fpm_socket_ready ||
        aegir_die "php-fpm did not open its socket in /run/php (see /var/log/php*-fpm.log)"
}

# Starts PostgreSQL, RabbitMQ, MariaDB, nginx and php-fpm unless they run
# already, and waits until each one answers.
aegir_start_backing_services() {
    aegir_require_root
    aegir__start_postgresql
    aegir__start_rabbitmq
    aegir__ensure_amqps
    aegir__start_mariadb
    aegir__start_nginx
    aegir__start_php_fpm
}

# ---------------------------------------------------------------------------
# PostgreSQL database
# ---------------------------------------------------------------------------

# aegir_ensure_database NAME: creates the database if it does not exist.
aegir_ensure_database() {
    local name="${1:?usage: aegir_ensure_database NAME}" exists
    [[ "${name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || aegir_die "invalid database name: ${name}"
    exists="$(aegir_psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '${name}'")"
    if [[ "${exists}" == 1 ]]; then
        aegir_log "postgresql: database ${name} exists"
    else
        aegir_log "postgresql: creating database ${name}"
        aegir_psql -d postgres -c "CREATE DATABASE \"${name}\""
    fi
}

# ---------------------------------------------------------------------------
# MariaDB admin account for the master database server
# ---------------------------------------------------------------------------

# aegir_mariadb_url_works URL: true if mysql://USER:PASS@HOST:PORT logs in.
aegir_mariadb_url_works() {
    local url="$1" rest creds user pass hostport host port
    rest="${url#mysql://}"
    [[ "${rest}" != "${url}" && "${rest}" == *@* ]] || return 1
    creds="${rest%@*}"
    hostport="${rest##*@}"
    hostport="${hostport%%/*}"
    user="${creds%%:*}"
    pass=""
    [[ "${creds}" == *:* ]] && pass="${creds#*:}"
    host="${hostport%%:*}"
    port="${AEGIR_MARIADB_PORT}"
    [[ "${hostport}" == *:* ]] && port="${hostport##*:}"
    MYSQL_PWD="${pass}" mariadb --protocol=tcp -h "${host}" -P "${port}" -u "${user}" \
        --connect-timeout=5 -e 'SELECT 1' >/dev/null 2>&1
}

aegir__saved_master_db() {
    [[ -r "${AEGIR_QUICKSTART_ENV}" ]] || return 0
    sed -n 's/^AEGIR_MASTER_DB=//p' "${AEGIR_QUICKSTART_ENV}" | tail -n 1
}

aegir__save_master_db() {
    local url="$1"
    if [[ "$(aegir__saved_master_db)" == "${url}" ]]; then
        return 0
    fi
    install -d -m 0755 "$(dirname "${AEGIR_QUICKSTART_ENV}")"
    (
        umask 077
        printf '# MariaDB admin URL used as master_db of @server_master\nAEGIR_MASTER_DB=%s\n' "${url}" \
            >"${AEGIR_QUICKSTART_ENV}"
    )
    chmod 0600 "${AEGIR_QUICKSTART_ENV}"
}

# Prints a mysql:// URL with admin rights over TCP and records it in
# /etc/aegir/quickstart.env. Uses root with an empty password when that
# works; otherwise (a stock install where root logs in through the unix
# socket only) creates the account "aegir_admin" through the socket.
aegir_master_db_url() {
    local url saved pass sql h
    url="mysql://root:@${AEGIR_MARIADB_HOST}:${AEGIR_MARIADB_PORT}"
    if aegir_mariadb_url_works "${url}"; then
        aegir__save_master_db "${url}"
        printf '%s\n' "${url}"
        return 0
    fi
    saved="$(aegir__saved_master_db)"
    if [[ -n "${saved}" ]] && aegir_mariadb_url_works "${saved}"; then
        printf '%s\n' "${saved}"
        return 0
    fi
    aegir_require_root
    aegir_log "mariadb: root cannot log in over TCP; creating account aegir_admin through the unix socket"
    pass="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    sql=""
    for h in localhost 127.0.0.1 ::1; do
        sql+="CREATE USER IF NOT EXISTS 'aegir_admin'@'${h}' IDENTIFIED BY '${pass}';"
        sql+="ALTER USER 'aegir_admin'@'${h}' IDENTIFIED BY '${pass}';"
        sql+="GRANT ALL PRIVILEGES ON *.* TO 'aegir_admin'@'${h}' WITH GRANT OPTION;"
    done
    mariadb -u root -e "${sql}" ||
        aegir_die "could not create the MariaDB account aegir_admin (tried: mariadb -u root through the socket)"
    url="mysql://aegir_admin:${pass}@${AEGIR_MARIADB_HOST}:${AEGIR_MARIADB_PORT}"
    aegir_mariadb_url_works "${url}" || aegir_die "the new MariaDB account aegir_admin cannot log in over TCP"
    aegir__save_master_db "${url}"
    aegir_log "mariadb: admin URL saved in ${AEGIR_QUICKSTART_ENV}"
    printf '%s\n' "${url}"
}

# ---------------------------------------------------------------------------
# Directories and the aegir account
# ---------------------------------------------------------------------------

aegir_ensure_dirs() {
    aegir_require_root
    install -d -m 0755 \
        /var/aegir \
        /var/aegir/platforms \
        /var/aegir/config \
        /var/aegir/config/server_master \
        /var/aegir/config/server_master/vhost.d \
        /var/aegir/backups \
        /var/log/aegir \
        /run/aegir
    if ! getent group aegir >/dev/null; then
        aegir_log "creating system group aegir"
        groupadd --system aegir
    fi
    if ! getent passwd aegir >/dev/null; then
        aegir_log "creating system user aegir (home /var/aegir)"
        useradd --system --gid aegir --home-dir /var/aegir --no-create-home \
            --shell /usr/sbin/nologin aegir
    fi
}

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------

# Makes cargo reachable when it was installed by rustup for root but the
# caller's PATH lacks ~/.cargo/bin (cron, CI runners, sudo).
aegir_ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
        PATH="${HOME:-/root}/.cargo/bin:${PATH}"
        export PATH
    fi
    command -v cargo >/dev/null 2>&1 || aegir_die "cargo not found; install a Rust toolchain (rustup) first"
}

aegir_target_dir() {
    echo "${CARGO_TARGET_DIR:-/var/cache/aegir/target}"
}

# aegir_build [--release]: builds every binary of the workspace.
aegir_build() {
    local args=(build --workspace --bins) target
    case "${1:-}" in
        --release) args+=(--release) ;;
        "") ;;
        *) aegir_die "usage: aegir_build [--release]" ;;
    esac
    aegir_ensure_cargo
    if [[ -f "${AEGIR_REPO_ROOT}/Cargo.lock" ]]; then
        args+=(--locked)
    fi
    target="$(aegir_target_dir)"
    mkdir -p "${target}"
    aegir_log "building: cargo ${args[*]} (target dir ${target})"
    (cd "${AEGIR_REPO_ROOT}" && cargo "${args[@]}" --target-dir "${target}")
}
