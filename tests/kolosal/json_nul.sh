#!/usr/bin/env bash
# "\u0000" is valid JSON: the server, the worker and the result check accept
# it, and no error text names a parser flag (issue 6, item 12).
source "$(dirname "$0")/lib.sh"

start_server --deadline-ms 5000
start_worker 1
wait_field workers_live 1

expect_eq "NUL in a string" "$(post '{"message":"a\u0000b"}' | sed 's/,"worker":[0-9]*//')" '200 {"result":"b\u0000a"}'
expect_eq "NUL alone" "$(post '{"message":"\u0000"}' | sed 's/,"worker":[0-9]*//')" '200 {"result":"\u0000"}'
expect_eq "NUL elsewhere in the object" "$(post '{"x":["\u0000"],"message":"ok"}' | sed 's/,"worker":[0-9]*//')" '200 {"result":"ko"}'

# A NUL inside an object key is the one thing the parser cannot represent:
# a 400 that says so in words, not in the parser's flag names.
r=$(post '{"a\u0000b":1,"message":"x"}')
case "$r" in '400 {"error":"invalid JSON: '*) ok "NUL in a key: $r";; *) fail "NUL in a key: $r";; esac
grep -q 'JSON_' <<<"$r" && fail "parser flag name in the error: $r"
ok "no flag name in the error"
stop_server
