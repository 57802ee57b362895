#!/usr/bin/env bash
#
# RabbitMQ users with least privilege, one per part of the system:
#
#   deploy/rabbitmq-users.sh [--vhost VHOST] control USER         task-api and the scheduler
#   deploy/rabbitmq-users.sh [--vhost VHOST] server SERVER USER   one server's workers
#   deploy/rabbitmq-users.sh [--vhost VHOST] billing PARTNER USER a billing or other integration
#
# Run it on the broker's host as root. The password is taken from
# AEGIR_BROKER_PASSWORD, or made and printed on stdout (keep it: RabbitMQ
# stores only its hash). Running it again for a user resets its password and
# permissions.
#
# What each may do (RabbitMQ's configure / write / read, as regular expressions):
#
#   control  the whole topology: it declares exchanges and every queue, including
#            each server's work queues the first time it sends them work.
#   server   configure nothing; write only to aegir.events (results and logs) and
#            aegir.dead (refused messages kept for operators); read only its own
#            server's queues. It cannot read, bind or publish another server's work.
#            Its workers run with AEGIR_DECLARE_QUEUES=false.
#   billing  publish commands (aegir.commands) and read what task-api tells PARTNER
#            through queues of its own, named billing.PARTNER.*, bound to
#            aegir.partner-events with PARTNER.# (RabbitMQ's topic permissions refuse
#            it any other partner's routing keys). It cannot read aegir.events, which
#            carries every step log of every client. Its commands must also be signed
#            with the partner's key (`aegir keys partner PARTNER`).
#
# Messages are also signed (see README, "Signed messages"): a user that may publish
# somewhere still cannot make a worker act without the right key.

set -euo pipefail

# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '3,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

VHOST=/
if [[ "${1:-}" == "--vhost" ]]; then
    [[ $# -ge 2 ]] || usage
    VHOST="$2"
    shift 2
fi

ROLE="${1:-}"
case "${ROLE}" in
control)
    [[ $# -eq 2 ]] || usage
    USER_NAME="$2"
    ;;
billing)
    [[ $# -eq 3 ]] || usage
    PARTNER="$2"
    USER_NAME="$3"
    [[ "${PARTNER}" =~ ^[a-z][a-z0-9_]{0,31}$ ]] ||
        aegir_die "billing: '${PARTNER}' is not a partner name (1 to 32 lowercase letters, digits and _, starting with a letter)"
    ;;
server)
    [[ $# -eq 3 ]] || usage
    SERVER="$2"
    USER_NAME="$3"
    [[ "${SERVER}" =~ ^server_[a-z0-9_]{1,48}$ ]] ||
        aegir_die "server: '${SERVER}' is not a server name (server_ followed by lowercase letters, digits and _)"
    ;;
*) usage ;;
esac
[[ "${USER_NAME}" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] ||
    aegir_die "user: '${USER_NAME}' must be 1 to 64 letters, digits, '.', '_' or '-'"

case "${ROLE}" in
control)
    names='(aegir\..*|scheduler\..*|api\..*|server_[a-z0-9_]+\.(http|db|backup|dns)(\.bulk)?)'
    CONFIGURE="^${names}\$"
    WRITE="^${names}\$"
    READ="^${names}\$"
    ;;
server)
    CONFIGURE='^$'
    WRITE='^aegir\.(events|dead)$'
    READ="^${SERVER}\\.(http|db|backup|dns)(\\.bulk)?\$"
    ;;
billing)
    CONFIGURE="^billing\\.${PARTNER}\\..*\$"
    WRITE="^(aegir\\.commands|billing\\.${PARTNER}\\..*)\$"
    READ="^(aegir\\.partner-events|billing\\.${PARTNER}\\..*)\$"
    ;;
esac

PASSWORD="${AEGIR_BROKER_PASSWORD:-}"
MADE_PASSWORD=false
if [[ -z "${PASSWORD}" ]]; then
    PASSWORD="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
    MADE_PASSWORD=true
fi

if rabbitmqctl --quiet list_users --no-table-headers | cut -f1 | grep -qxF -- "${USER_NAME}"; then
    rabbitmqctl --quiet change_password -- "${USER_NAME}" "${PASSWORD}" >/dev/null
else
    rabbitmqctl --quiet add_user -- "${USER_NAME}" "${PASSWORD}" >/dev/null
fi
rabbitmqctl --quiet set_permissions -p "${VHOST}" -- "${USER_NAME}" "${CONFIGURE}" "${WRITE}" "${READ}" >/dev/null
if [[ "${ROLE}" == billing ]]; then
    # Binding to a topic exchange is checked against these: only the partner's own keys.
    rabbitmqctl --quiet set_topic_permissions -p "${VHOST}" -- "${USER_NAME}" aegir.partner-events \
        '^$' "^${PARTNER}\\..*\$" >/dev/null
fi
aegir_log "rabbitmq: ${USER_NAME} (${ROLE}${SERVER:+ ${SERVER}}${PARTNER:+ ${PARTNER}}) on vhost ${VHOST}: configure ${CONFIGURE}, write ${WRITE}, read ${READ}" >&2
if [[ "${MADE_PASSWORD}" == true ]]; then
    printf '%s\n' "${PASSWORD}"
fi
