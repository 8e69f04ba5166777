#!/bin/sh
# One-shot steps of the Docker flavour's TLS + auth etcd (compose/docker-compose.yml);
# the native launcher does the same in Python (compose/etcd/).
#   etcd-tls.sh certs   CA, server certificate (etcd, localhost, 127.0.0.1) and CN-less
#                       client certificates (root, patroni, app) in $PKI; kept if present
#   etcd-tls.sh auth    users root, patroni (readwrite on $PREFIX), app (read-only on it),
#                       then auth enable; nothing to do when auth is already on
# Passwords come from CTXDB_ETCD_{ROOT,PATRONI,APP}_PASSWORD and reach etcdctl on its
# stdin or in ETCDCTL_USER, never in argv; nothing here prints them.
set -eu
PKI=${PKI:-/etc/ctxdb-etcd/pki}
PREFIX=${PREFIX:-/service/}
SCOPE=${SCOPE:-ctxdb}
ENDPOINT=${ENDPOINT:-https://etcd:25400}

sign() {  # sign NAME SUBJECT EXTENSIONS
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key"
    openssl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr"
    printf '%b' "$3" > "$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt"
    rm -f "$PKI/$1.csr" "$PKI/$1.ext"
}

certs() {
    [ -s "$PKI/ca.crt" ] && return 0
    mkdir -p "$PKI"
    leaf='subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key"
    openssl req -x509 -new -key "$PKI/ca.key" -sha256 -days 30 -subj "/CN=ctxdb test etcd CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -out "$PKI/ca.crt"
    sign server /CN=etcd "${leaf}extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:etcd,DNS:localhost,IP:127.0.0.1\n"
    for name in root patroni app; do
        sign "client-$name" "/O=ctxdb/OU=etcd-$name" "${leaf}extendedKeyUsage=clientAuth\n"
    done
    chmod 600 "$PKI"/*.key
    chown -R postgres:postgres "$PKI"
}

ctl() {
    etcdctl --endpoints="$ENDPOINT" --cacert="$PKI/ca.crt" --cert="$PKI/client-root.crt" \
        --key="$PKI/client-root.key" --dial-timeout=3s --command-timeout=5s "$@"
}

auth() {
    tries=0
    until ctl endpoint health >/dev/null 2>&1 || ETCDCTL_USER="root:$CTXDB_ETCD_ROOT_PASSWORD" ctl endpoint health >/dev/null 2>&1; do
        tries=$((tries + 1)); [ "$tries" -lt 60 ] || { echo "etcd not healthy" >&2; exit 1; }
        sleep 0.5
    done
    # With auth on, an anonymous user list is refused: then there is nothing to do.
    ctl user list >/dev/null 2>&1 || exit 0
    for user in root patroni app; do
        case $user in
            root) password=$CTXDB_ETCD_ROOT_PASSWORD ;;
            patroni) password=$CTXDB_ETCD_PATRONI_PASSWORD ;;
            app) password=$CTXDB_ETCD_APP_PASSWORD ;;
        esac
        ctl user get "$user" >/dev/null 2>&1 || printf '%s\n' "$password" | ctl user add "$user" --interactive=false >/dev/null
    done
    ctl user grant-role root root >/dev/null
    ctl role add patroni >/dev/null 2>&1 || true
    ctl role add app >/dev/null 2>&1 || true
    ctl role grant-permission patroni readwrite "$PREFIX" --prefix=true >/dev/null
    ctl role grant-permission app read "$PREFIX" --prefix=true >/dev/null
    # Only where a fleet's processes tell each other a new leader accepts writes
    # (topology._dcs_claim): not Patroni's own keys.
    ctl role grant-permission app readwrite "${PREFIX}${SCOPE}/topology/" --prefix=true >/dev/null
    ctl user grant-role patroni patroni >/dev/null
    ctl user grant-role app app >/dev/null
    ctl auth enable >/dev/null
}

case ${1:-} in
    certs) certs ;;
    auth) auth ;;
    *) echo "usage: $0 certs|auth" >&2; exit 2 ;;
esac
