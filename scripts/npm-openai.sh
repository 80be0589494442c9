#!/usr/bin/env bash
# Installs the official `openai` npm client (a client nobody here wrote, for
# integration tests of OpenAI-compatible endpoints) once per machine into
#   ${FERRY_CACHE:-$HOME/.cache/ferry}/npm-openai/node_modules
# and prints that node_modules directory (use it as NODE_PATH; the test
# client tests/hub/openai_client.mjs also reads it from NODE_PATH).
# Idempotent; concurrent runs wait on a lock. Progress goes to stderr.
# Usage: scripts/npm-openai.sh [--help]
set -euo pipefail

VERSION=6.49.0      # the newest major that still runs on Node 20 (7.x wants >= 22)
CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
DIR=$CACHE/npm-openai
MODS=$DIR/node_modules

case ${1:-} in
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "npm-openai.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

installed() { [ -f "$DIR/.installed-$VERSION" ] && [ -f "$MODS/openai/package.json" ]; }

if ! installed; then
  command -v npm >/dev/null || { echo "npm-openai.sh: npm not found" >&2; exit 1; }
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock 9
  if ! installed; then
    echo "npm-openai.sh: installing openai@$VERSION into $DIR" >&2
    [ -f "$DIR/package.json" ] || echo '{"name":"ferry-npm-openai","private":true}' >"$DIR/package.json"
    # --legacy-peer-deps: the client's optional peers (AWS signing, zod, ws)
    # are not needed for chat completions.
    (cd "$DIR" && npm install --silent --no-audit --no-fund --legacy-peer-deps "openai@$VERSION" >&2)
    [ -f "$MODS/openai/package.json" ] || { echo "npm-openai.sh: install failed" >&2; exit 1; }
    touch "$DIR/.installed-$VERSION"
  fi
fi
echo "$MODS"
