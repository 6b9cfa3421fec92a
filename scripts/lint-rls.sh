#!/usr/bin/env bash
# The RLS linter a DBA runs, against the migrated dev database (`make lint-rls`, called by CI):
# pgrls in live-catalog mode, failing on any warning that pgrls.toml does not allowlist with a
# reason. Installs pgrls into the project's virtualenv (.dev/venv) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

PGRLS_VERSION=0.57.1
VENV=.dev/venv
URL=${LINT_DATABASE_URL:-postgres://tenant_files_owner@127.0.0.1:54329/tenant_files}

if ! "$VENV/bin/pgrls" --version 2>/dev/null | grep -q "$PGRLS_VERSION"; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "pgrls==$PGRLS_VERSION"
fi
"$VENV/bin/pgrls" lint --database-url "$URL" --config pgrls.toml --fail-on warning
