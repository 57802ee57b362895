#!/usr/bin/env bash
#
# One command runs all the tests: it installs and starts the backing
# services (PostgreSQL, RabbitMQ, MariaDB, nginx, php-fpm), then runs
#
#   cargo fmt --all -- --check
#   cargo clippy --workspace --all-targets --locked -- -D warnings
#   cargo build --workspace --bins --locked
#   cargo test --workspace --locked [ARGS...]
#
# against those real services. Extra arguments go to `cargo test`, e.g.
#
#   deploy/test.sh -p aegir-contract
#   deploy/test.sh -- --nocapture
#
# The tests find the services through AEGIR_TEST_AMQP_URL,
# AEGIR_TEST_DATABASE_URL and AEGIR_TEST_MARIADB_URL (set below unless
# already set), and moto's S3 server through AEGIR_TEST_MOTO_SERVER.
# Build output goes to CARGO_TARGET_DIR (default /var/cache/aegir/target).

set -euo pipefail

# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "${AEGIR_REPO_ROOT}"

aegir_install_packages
AEGIR_TEST_MOTO_SERVER="${AEGIR_TEST_MOTO_SERVER:-$(aegir_install_moto)}"
export AEGIR_TEST_MOTO_SERVER
aegir_start_backing_services
aegir_ensure_cargo

CARGO_TARGET_DIR="$(aegir_target_dir)"
export CARGO_TARGET_DIR
mkdir -p "${CARGO_TARGET_DIR}"

AEGIR_TEST_AMQP_URL="${AEGIR_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
AEGIR_TEST_DATABASE_URL="${AEGIR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if [[ -z "${AEGIR_TEST_MARIADB_URL:-}" ]]; then
    AEGIR_TEST_MARIADB_URL="$(aegir_master_db_url)"
fi
export AEGIR_TEST_AMQP_URL AEGIR_TEST_DATABASE_URL AEGIR_TEST_MARIADB_URL

LOCKED=()
if [[ -f Cargo.lock ]]; then
    LOCKED=(--locked)
else
    aegir_warn "no Cargo.lock in ${AEGIR_REPO_ROOT}; running cargo without --locked"
fi

# `cargo test --workspace` ignores -p, so leave --workspace out when the
# caller picks packages.
TEST_SCOPE=(--workspace)
for arg in "$@"; do
    [[ "${arg}" == "--" ]] && break
    case "${arg}" in
    -p | -p* | --package | --package=*)
        TEST_SCOPE=()
        break
        ;;
    esac
done

aegir_log "$(cargo --version), $(rustc --version)"
aegir_log "target dir ${CARGO_TARGET_DIR}"
aegir_log "AEGIR_TEST_AMQP_URL=${AEGIR_TEST_AMQP_URL}"
aegir_log "AEGIR_TEST_DATABASE_URL=${AEGIR_TEST_DATABASE_URL}"
aegir_log "AEGIR_TEST_MARIADB_URL=${AEGIR_TEST_MARIADB_URL%%:*}://…@${AEGIR_TEST_MARIADB_URL##*@}"

SUMMARY=()
FAILED=0

# step NAME COMMAND [ARGS...]: runs one check and records its outcome.
step() {
    local name="$1" start status
    shift
    start=${SECONDS}
    aegir_log "${name}: $*"
    if "$@"; then
        status=ok
    else
        status=FAILED
        FAILED=1
    fi
    SUMMARY+=("$(printf '%-8s %-8s %4ss' "${name}" "${status}" "$((SECONDS - start))")")
}

step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets "${LOCKED[@]}" -- -D warnings
step build cargo build --workspace --bins "${LOCKED[@]}"
if [[ "${SUMMARY[-1]}" == *FAILED* ]]; then
    SUMMARY+=("$(printf '%-8s %-8s' test skipped) (build failed)")
else
    step test cargo test "${TEST_SCOPE[@]}" "${LOCKED[@]}" "$@"
fi

printf '\n==> summary\n'
printf '  %s\n' "${SUMMARY[@]}"
if ((FAILED)); then
    printf 'result: some checks FAILED\n'
    exit 1
fi
printf 'result: every check passed\n'
