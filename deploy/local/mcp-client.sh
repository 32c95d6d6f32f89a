#!/usr/bin/env bash
# The MCP client the integration tests drive `pipeline-mcp` with: the Python `mcp` SDK from
# PyPI, installed into .local/mcp-client (a project-local virtual environment) on first use
# or when the pinned version changes. Prints the environment's python on stdout.
#
# Used by deploy/local/test.sh; the test `mcp::` (tests/tests/integration/mcp.rs) finds the
# environment at .local/mcp-client (or at MCP_CLIENT_PYTHON, a python with `mcp` installed).
set -euo pipefail
cd "$(dirname "$0")/../.."

MCP_VERSION=2.3.0
VENV=.local/mcp-client

die() { echo "error: $*" >&2; exit 1; }

stamp="$VENV/.mcp-$MCP_VERSION"
if [[ ! -f $stamp || ! -x $VENV/bin/python ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2 || die "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
    echo "installing mcp==$MCP_VERSION into $VENV" >&2
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "mcp==$MCP_VERSION" >&2 \
        || die "pip install mcp failed"
    touch "$stamp"
fi
echo "$PWD/$VENV/bin/python"
