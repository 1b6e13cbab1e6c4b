#!/usr/bin/env bash
# The project's test command (README.md, "Tests"): formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/integration/restic_compat.rs compares cista's JSON with a real restic's; install
# Debian's restic when it is missing and we can (root with apt), else that test says it skipped.
if ! command -v restic >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq restic >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq restic >/dev/null; } ||
    echo "scripts/test.sh: could not install restic; the restic JSON comparison will be skipped"
fi
# The remote-backend tests (tests/integration/remote.rs) need a real S3 server and a real
# OpenSSH server on 127.0.0.1, the database tests (tests/integration/postgres.rs) a real
# PostgreSQL (tests/integration/servers.rs starts and stops each by pid).
# Install what is missing; every step is skipped when its tool is already there, so re-runs
# stay fast. CISTA_REQUIRE_SERVERS makes a missing server a failure, never a silent skip.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
  command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
  if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
  fi
fi
# moto's S3 server, pinned, in a venv of its own (not the system Python).
MOTO_VERSION=5.2.1
if ! .venv-test/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" >/dev/null 2>&1; then
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q "moto[server]==$MOTO_VERSION"
fi
export CISTA_REQUIRE_SERVERS=1
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
cargo test --doc --locked
