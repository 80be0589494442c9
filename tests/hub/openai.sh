#!/usr/bin/env bash
# A client nobody here wrote: the official openai npm package against the
# hub's /v1 endpoint, streaming and not (tests/hub/openai_client.mjs).
source "$(dirname "$0")/lib.sh"
backend_setup
MODS=$("$SRC/scripts/npm-openai.sh") || fail "scripts/npm-openai.sh could not install the openai client"
start_llama 1
start_llama 2
start_hub
start_spoke 1
start_spoke 2
wait_healthy 2
NODE_PATH=$MODS node "$SRC/tests/hub/openai_client.mjs" "http://127.0.0.1:$HPORT/v1" "$KEY" || fail "openai client failed"
ok "openai npm client: chat.completions.create, with and without stream"
NODE_PATH=$MODS node "$SRC/tests/hub/openai_client.mjs" "http://127.0.0.1:$HPORT/v1" wrong-key >/dev/null 2>&1 &&
  fail "the openai client succeeded with a wrong key"
ok "openai npm client with a wrong key fails"
stop_hub
check_sanitizers
echo PASS
