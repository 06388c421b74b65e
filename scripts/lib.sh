# shellcheck shell=bash
# Shared helpers for scripts/stack, scripts/test and scripts/export-abi.
#
# Source it; it defines functions and variables but starts nothing by itself:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Everything here must work on a fresh clone of the repository on a fresh machine
# (CI=true, no stdin, no TTY): each helper installs what it needs or fails with a
# message that says what to do.

if [[ -n "${CARECHAIN_LIB_SOURCED:-}" ]]; then
  return 0
fi
CARECHAIN_LIB_SOURCED=1

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# Foundry comes from the pinned npm packages; the native binary sits in the
# per-platform package (the npm postinstall that would link it is blocked).
FOUNDRY_PLATFORM="${FOUNDRY_PLATFORM:-linux-amd64}"
FORGE_BIN="${FORGE_BIN:-$REPO_ROOT/node_modules/@foundry-rs/forge-$FOUNDRY_PLATFORM/bin/forge}"
ANVIL_BIN="${ANVIL_BIN:-$REPO_ROOT/node_modules/@foundry-rs/anvil-$FOUNDRY_PLATFORM/bin/anvil}"
CAST_BIN="${CAST_BIN:-$REPO_ROOT/node_modules/@foundry-rs/cast-$FOUNDRY_PLATFORM/bin/cast}"
export FORGE_BIN ANVIL_BIN CAST_BIN

# Pinned static-analysis and symbolic-testing toolchain (Python venv at .venv).
VENV_DIR="${CARECHAIN_VENV:-$REPO_ROOT/.venv}"
SLITHER_VERSION="0.11.6"
CRYTIC_COMPILE_VERSION="0.4.2"
HALMOS_VERSION="0.3.3"

# anvil's first well-known development account (mnemonic "test test ... junk").
# Public knowledge, holds value only on local dev chains.
ANVIL_DEV_KEY="0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_DEV_ADDRESS="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

PG_BINDIR="${PG_BINDIR:-}"

# --- messages ---------------------------------------------------------------

if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
  _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_yellow=$'\e[33m' _c_reset=$'\e[0m'
else
  _c_bold='' _c_red='' _c_yellow='' _c_reset=''
fi

log() { printf '%s==>%s %s\n' "$_c_bold" "$_c_reset" "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$_c_yellow" "$_c_reset" "$*" >&2; }
die() {
  printf '%serror:%s %s\n' "$_c_red" "$_c_reset" "$*" >&2
  exit 1
}

is_root() { [[ "$(id -u)" == 0 ]]; }

# --- installs ---------------------------------------------------------------

_APT_UPDATED=""

# ensure_apt PKG...: install the Debian packages that are not installed yet.
ensure_apt() {
  local missing=() pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  if ! is_root; then
    command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
  if [[ -z "$_APT_UPDATED" ]]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq </dev/null \
      || die "apt-get update failed"
    _APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" </dev/null || die "apt-get install ${missing[*]} failed"
}

# npm_pin PACKAGE: the exact version package.json pins PACKAGE to.
npm_pin() {
  node -e 'const v = require(process.argv[1]).devDependencies[process.argv[2]];
    if (!v) process.exit(1);
    console.log(v);' "$REPO_ROOT/package.json" "$1"
}

# _check_tool_versions: the binaries the project runs report the pinned versions.
_check_tool_versions() {
  local tool bin want got
  for tool in forge anvil cast; do
    case "$tool" in
      forge) bin="$FORGE_BIN" ;;
      anvil) bin="$ANVIL_BIN" ;;
      cast) bin="$CAST_BIN" ;;
    esac
    want="$(npm_pin "@foundry-rs/$tool")" || die "package.json pins no @foundry-rs/$tool"
    [[ -x "$bin" ]] || die "$tool is not at $bin after installing (platform $FOUNDRY_PLATFORM?)"
    got="$("$bin" --version 2>/dev/null | head -n 1)"
    [[ "$got" =~ Version:\ v?${want//./\\.}($|[^0-9]) ]] \
      || die "$tool reports \"$got\" but package.json pins $want: run 'rm -rf node_modules' and run this command again (it reinstalls from package-lock.json)"
  done
  want="$(npm_pin solc)" || die "package.json pins no solc"
  got="$("$REPO_ROOT/tools/solc" --version 2>/dev/null | sed -n 2p)"
  [[ "$got" == "Version: $want+"* || "$got" == "Version: $want" ]] \
    || die "solc reports \"$got\" but package.json pins $want: run 'rm -rf node_modules' and run this command again (it reinstalls from package-lock.json)"
}

# ensure_node_deps: install node_modules from package-lock.json when missing or stale, then
# check that forge, anvil, cast and solc are the pinned versions.
#
# `npm ci` installs exactly what package-lock.json locks (versions and integrity) and never
# writes package.json or the lockfile. It refuses to run when building the tree from the
# lockfile would resolve anything against the registry; that happened when the lockfile lacked
# Foundry's optional per-platform packages (darwin, linux-arm64, win32) and the registry
# started serving them. The lockfile now locks every optional package that the locked
# packages declare, which `node-pins.js lockfile` checks before every install. Why this holds
# whatever the registry does later: a published package version is immutable, so the set of
# optional packages that forge, anvil and cast 1.7.1 declare can never grow; a locked optional
# package for another platform is skipped by `npm ci` without being fetched, so one the
# registry stops serving does no harm either. Only a package this platform installs has to be
# served, and its integrity is checked against the lockfile.
ensure_node_deps() {
  command -v node >/dev/null || ensure_apt nodejs npm
  command -v npm >/dev/null || ensure_apt npm
  node "$REPO_ROOT/scripts/node-pins.js" lockfile "$REPO_ROOT" \
    || die "package.json and package-lock.json do not pin the npm packages as they must (above)"
  if ! node "$REPO_ROOT/scripts/node-pins.js" installed "$REPO_ROOT" 2>/dev/null \
    || [[ ! -x "$FORGE_BIN" || ! -x "$ANVIL_BIN" || ! -x "$CAST_BIN" ]]; then
    log "npm ci (node_modules missing or not what package-lock.json locks)"
    (cd "$REPO_ROOT" && npm ci --no-audit --no-fund --loglevel=error </dev/null) \
      || die "npm ci failed (above); package-lock.json is unchanged"
    node "$REPO_ROOT/scripts/node-pins.js" installed "$REPO_ROOT" \
      || die "npm ci finished but node_modules is not what package-lock.json locks (above)"
  fi
  _check_tool_versions
}

# ensure_python_tools: venv at .venv with the pinned slither-analyzer and halmos.
ensure_python_tools() {
  local want="slither-analyzer==$SLITHER_VERSION crytic-compile==$CRYTIC_COMPILE_VERSION halmos==$HALMOS_VERSION"
  local stamp="$VENV_DIR/.carechain-pins"
  if [[ -x "$VENV_DIR/bin/slither" && -x "$VENV_DIR/bin/halmos" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  command -v python3 >/dev/null || ensure_apt python3 python3-venv
  if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    log "creating Python venv at ${VENV_DIR#"$REPO_ROOT"/}"
    python3 -m venv "$VENV_DIR" 2>/dev/null || {
      ensure_apt python3-venv
      python3 -m venv "$VENV_DIR"
    } || die "cannot create a venv at $VENV_DIR"
  fi
  log "pip install $want"
  # shellcheck disable=SC2086
  "$VENV_DIR/bin/python" -m pip install -q --disable-pip-version-check $want </dev/null \
    || die "pip install $want failed"
  printf '%s' "$want" >"$stamp"
}

# ensure_chromium: Debian's chromium for the portal's browser test (playwright-core drives it;
# no browser is downloaded); exports CHROMIUM_BIN.
ensure_chromium() {
  if [[ -z "${CHROMIUM_BIN:-}" || ! -x "${CHROMIUM_BIN}" ]]; then
    command -v chromium >/dev/null || ensure_apt chromium
    CHROMIUM_BIN="$(command -v chromium)" || die "chromium installed but not on PATH"
  fi
  export CHROMIUM_BIN
}

# ensure_postgres: PostgreSQL server binaries (initdb, pg_ctl); sets PG_BINDIR.
ensure_postgres() {
  _find_pg_bindir && return 0
  ensure_apt postgresql
  _find_pg_bindir || die "PostgreSQL installed but initdb not found under /usr/lib/postgresql/*/bin"
}

_find_pg_bindir() {
  local d
  if [[ -n "$PG_BINDIR" && -x "$PG_BINDIR/initdb" ]]; then return 0; fi
  # Prefer 15 (the version the project is developed against), then the newest.
  for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
      PG_BINDIR="$d"
      return 0
    fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    PG_BINDIR="$(dirname "$(command -v initdb)")"
    return 0
  fi
  return 1
}

# --- ports and processes ----------------------------------------------------

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port: print a TCP port on 127.0.0.1 that is free right now.
free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    return
  fi
  local port tries=0
  while ((tries++ < 200)); do
    port=$((20000 + RANDOM % 30000))
    port_in_use "$port" || {
      echo "$port"
      return 0
    }
  done
  die "no free port found"
}

# wait_for TIMEOUT_SECONDS PID DESCRIPTION COMMAND...: poll COMMAND until it
# succeeds; fail early if PID (when non-empty) exits.
wait_for() {
  local timeout="$1" pid="$2" what="$3"
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    ((SECONDS < deadline)) || {
      warn "$what not ready after ${timeout}s"
      return 1
    }
    sleep 0.2
  done
}

# stop_pid PID [NAME]: TERM, wait up to 20 s, then KILL.
stop_pid() {
  local pid="$1" name="${2:-process}" i
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$name (pid $pid) ignored TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# --- anvil ------------------------------------------------------------------

# start_anvil PORT LOGFILE [ANVIL_ARGS...]: start anvil on 127.0.0.1:PORT in the
# background, log to LOGFILE, wait until `cast chain-id` answers.
# Sets ANVIL_PID and ANVIL_RPC_URL.
start_anvil() {
  local port="$1" logfile="$2"
  shift 2
  [[ -x "$ANVIL_BIN" ]] || die "anvil not found at $ANVIL_BIN (run scripts/test or scripts/stack to install it)"
  port_in_use "$port" && die "port $port on 127.0.0.1 is already in use (anvil)"
  mkdir -p "$(dirname "$logfile")"
  "$ANVIL_BIN" --host 127.0.0.1 --port "$port" "$@" >"$logfile" 2>&1 </dev/null &
  ANVIL_PID=$!
  ANVIL_RPC_URL="http://127.0.0.1:$port"
  if ! wait_for 60 "$ANVIL_PID" "anvil" "$CAST_BIN" chain-id --rpc-url "$ANVIL_RPC_URL"; then
    tail -n 20 "$logfile" >&2 || true
    stop_pid "$ANVIL_PID" anvil
    die "anvil did not start on $ANVIL_RPC_URL (log: $logfile)"
  fi
}

# --- contracts --------------------------------------------------------------

# forge_build [ARGS...]: forge build from the repo root.
forge_build() {
  (cd "$REPO_ROOT" && "$FORGE_BIN" build "$@")
}

# deploy_contracts RPC_URL MANIFEST: run the deploy script with anvil's first
# dev key; the script writes the manifest to $DEPLOY_MANIFEST. Use
# DEPLOYER_PRIVATE_KEY to deploy with another key, GOVERNANCE to hand the
# governance roles to another address.
#
# forge lets scripts write only under deployments/ (fs_permissions in
# foundry.toml), so the script writes a staged file there, which is moved to
# MANIFEST (any path) once its deploymentBlock has been checked against the
# receipts forge saved.
deploy_contracts() {
  local rpc="$1" manifest="$2"
  local script="contracts/script/Deploy.s.sol"
  [[ -f "$REPO_ROOT/$script" ]] || die "$script does not exist yet: nothing to deploy"
  local chain
  chain="$("$CAST_BIN" chain-id --rpc-url "$rpc" </dev/null)" || die "no chain answers at $rpc"
  mkdir -p "$(dirname "$manifest")" "$REPO_ROOT/deployments"
  local staged="$REPO_ROOT/deployments/.staged-$chain-$$-$RANDOM.json"
  rm -f "$staged"
  log "deploying contracts to $rpc"
  if ! (cd "$REPO_ROOT" && DEPLOY_MANIFEST="$staged" "$FORGE_BIN" script "$script" \
    --rpc-url "$rpc" --broadcast --private-key "${DEPLOYER_PRIVATE_KEY:-$ANVIL_DEV_KEY}" </dev/null); then
    rm -f "$staged"
    die "deployment failed"
  fi
  [[ -s "$staged" ]] || die "deploy script finished but wrote no manifest (expected $staged)"
  local broadcast="${FOUNDRY_BROADCAST:-$REPO_ROOT/broadcast}"
  [[ "$broadcast" == /* ]] || broadcast="$REPO_ROOT/$broadcast"
  _manifest_set_block_from_receipts "$staged" "$broadcast/Deploy.s.sol/$chain/run-latest.json" \
    || warn "could not confirm deploymentBlock from forge's receipts; kept the script's lower bound"
  mv -f "$staged" "$manifest"
}

# _manifest_set_block_from_receipts MANIFEST BROADCAST_JSON: set deploymentBlock
# to the block of the ProviderRegistry creation receipt (the script's first
# transaction). The script can only predict it (next block after the one it ran
# against); on a chain that does not mine at once the real block is later.
# Fails, changing nothing, when the broadcast file is not this deployment's
# (e.g. another deployment to the same chain id ran at the same time).
_manifest_set_block_from_receipts() {
  node -e '
    const fs = require("fs");
    const [manifestPath, broadcastPath] = process.argv.slice(1);
    const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
    const run = JSON.parse(fs.readFileSync(broadcastPath, "utf8"));
    const want = manifest.contracts.ProviderRegistry.toLowerCase();
    const receipt = (run.receipts || []).find(
      (r) => (r.contractAddress || "").toLowerCase() === want);
    if (!receipt) process.exit(1);
    const block = Number(BigInt(receipt.blockNumber));
    if (block !== manifest.deploymentBlock) {
      console.error(`deploymentBlock: ${manifest.deploymentBlock} (predicted) -> ${block} (receipt)`);
      manifest.deploymentBlock = block;
      fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
    }' "$1" "$2" 2>&1 >/dev/null | sed 's/^/  /' >&2
  return "${PIPESTATUS[0]}"
}

# manifest_field FILE KEY: print a field of a deployment manifest
# (e.g. chainId, deploymentBlock, contracts.ProviderRegistry).
manifest_field() {
  node -e '
    let v = require(require("path").resolve(process.argv[1]));
    for (const k of process.argv[2].split(".")) v = v == null ? undefined : v[k];
    if (v === undefined || v === null) process.exit(1);
    console.log(String(v));' "$1" "$2"
}

# manifest_is_live FILE RPC_URL: the manifest's chain id matches and every
# contract in it has code on the chain.
manifest_is_live() {
  local manifest="$1" rpc="$2" chain addr name
  [[ -s "$manifest" ]] || return 1
  chain="$(manifest_field "$manifest" chainId)" || return 1
  [[ "$chain" == "$("$CAST_BIN" chain-id --rpc-url "$rpc" 2>/dev/null)" ]] || return 1
  for name in ProviderRegistry ConsentRegistry RecordRegistry AuditAnchor; do
    addr="$(manifest_field "$manifest" "contracts.$name")" || return 1
    [[ "$("$CAST_BIN" code "$addr" --rpc-url "$rpc" 2>/dev/null)" != "0x" ]] || return 1
  done
}

# --- local certificate authority ---------------------------------------------
#
# ensure_local_ca DIR: a private CA for one machine's stack and a server certificate it
# signed, in DIR (openssl from Debian, installed when missing):
#   DIR/ca.pem       the CA certificate: what clients are told to trust
#   DIR/ca.key       its key (0600, never leaves DIR)
#   DIR/server.pem   a certificate for localhost, 127.0.0.1 and ::1 (825 days)
#   DIR/server.key   its key (0600)
# Existing files are kept (a CA someone already trusts stays the same); the server
# certificate is issued again when it is missing, expires within 30 days, or was not signed
# by DIR/ca.pem.
ensure_local_ca() {
  local dir="$1"
  command -v openssl >/dev/null || ensure_apt openssl
  mkdir -p "$dir"
  (
    umask 077
    cd "$dir" || exit 1
    if [[ ! -s ca.pem || ! -s ca.key ]]; then
      rm -f ca.pem ca.key server.pem server.key
      openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout ca.key -out ca.pem -days 3650 -subj "/CN=carechain local stack CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1 \
        || { echo "openssl could not create the CA in $dir" >&2; exit 1; }
    fi
    if [[ ! -s server.pem || ! -s server.key ]] \
      || ! openssl x509 -in server.pem -noout -checkend $((30 * 86400)) >/dev/null 2>&1 \
      || ! openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1; then
      printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
        "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" >server.ext
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout server.key -out server.csr -subj "/CN=localhost" >/dev/null 2>&1 \
        && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
          -days 825 -extfile server.ext -out server.pem >/dev/null 2>&1 \
        || { echo "openssl could not issue the server certificate in $dir" >&2; exit 1; }
      rm -f server.csr server.ext
    fi
    chmod 644 ca.pem server.pem
  ) || die "could not set up the local CA in $dir"
}

# --- PostgreSQL -------------------------------------------------------------
#
# A private cluster: DIR/data (owned by the postgres OS user when running as
# root, since the server refuses to run as root), sockets in DIR/run, log at
# DIR/postgres.log, listening only on 127.0.0.1, trust auth, database carechain.

PG_SUPERUSER=""

_pg_run() {
  if is_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pg_start DIR [PORT]: init (first time) and start the cluster; exports
# DATABASE_URL. PORT defaults to a free port. Sets PG_DIR and PG_PORT.
# PG_SERVER_OPTS adds server options (e.g. "-c fsync=off" for throwaway clusters).
pg_start() {
  local dir="$1" port="${2:-}"
  ensure_postgres
  [[ -n "$port" ]] || port="$(free_port)"
  port_in_use "$port" && die "port $port on 127.0.0.1 is already in use (PostgreSQL)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local data="$dir/data" run="$dir/run"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user"
    PG_SUPERUSER=postgres
    # The server runs as postgres: it must be able to reach DIR.
    if ! runuser -u postgres -- test -x "$dir"; then
      die "the postgres OS user cannot reach $dir (a parent directory is not world-searchable); use a location it can reach"
    fi
  else
    PG_SUPERUSER="$(id -un)"
  fi
  mkdir -p "$run"
  # Unix socket paths are limited to ~107 bytes; fall back to TCP only.
  local sockdir="$run"
  if ((${#run} > 90)); then sockdir=""; fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    rm -rf "$data"
    mkdir -p "$data"
    if is_root; then chown postgres: "$data" "$run"; fi
    chmod 700 "$data"
    _pg_run "$PG_BINDIR/initdb" -D "$data" -U "$PG_SUPERUSER" --auth-local=trust --auth-host=trust \
      --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || _pg_run "$PG_BINDIR/initdb" -D "$data" -U "$PG_SUPERUSER" --auth-local=trust --auth-host=trust \
        --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
      || {
        cat "$dir/initdb.log" >&2
        die "initdb failed in $data"
      }
  fi
  if is_root; then chown postgres: "$run" "$dir"; fi
  : >"$dir/postgres.log"
  if is_root; then chown postgres: "$dir/postgres.log"; fi
  _pg_run "$PG_BINDIR/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$sockdir' ${PG_SERVER_OPTS:-}" \
    start >/dev/null || {
    tail -n 20 "$dir/postgres.log" >&2
    die "PostgreSQL did not start (log: $dir/postgres.log)"
  }
  PG_DIR="$dir"
  PG_PORT="$port"
  if ! "$PG_BINDIR/psql" -h 127.0.0.1 -p "$port" -U "$PG_SUPERUSER" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'carechain'" </dev/null | grep -q 1; then
    "$PG_BINDIR/createdb" -h 127.0.0.1 -p "$port" -U "$PG_SUPERUSER" carechain </dev/null \
      || die "createdb carechain failed"
  fi
  export DATABASE_URL="postgres://$PG_SUPERUSER@127.0.0.1:$port/carechain"
}

# pg_stop DIR: fast shutdown of the cluster in DIR (no-op when not running).
pg_stop() {
  local dir="$1"
  [[ -n "$dir" && -f "$dir/data/postmaster.pid" ]] || return 0
  _find_pg_bindir || return 0
  _pg_run "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}
