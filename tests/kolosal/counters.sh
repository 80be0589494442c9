#!/usr/bin/env bash
# /status counters reconcile: submitted = completed + failed + cancelled +
# in_flight in every snapshot: after 504s, after clients that left, after
# worker errors, and while requests are in flight (issue 6, item 13).
source "$(dirname "$0")/lib.sh"

# field JSON NAME: a top-level number from one /status answer.
field() { grep -o "\"$2\":[0-9]*" <<<"$1" | head -1 | cut -d: -f2 || true; }

# check_sum WHAT: one snapshot must reconcile; prints it.
check_sum() {
  local s sub com fai can inf
  s=$(curl -s --max-time 5 "http://127.0.0.1:$PORT/status")
  sub=$(field "$s" submitted); com=$(field "$s" completed); fai=$(field "$s" failed)
  can=$(field "$s" cancelled); inf=$(field "$s" in_flight)
  [ -n "$sub" ] && [ -n "$com" ] && [ -n "$fai" ] && [ -n "$can" ] && [ -n "$inf" ] \
    || fail "$1: /status lacks a counter: $s"
  [ "$sub" -eq $((com + fai + can + inf)) ] \
    || fail "$1: submitted $sub != completed $com + failed $fai + cancelled $can + in_flight $inf"
  SNAP="$sub $com $fai $can $inf"
}

# expect_snap WHAT "sub com fai can inf": waits until a snapshot equals it.
expect_snap() {
  for _ in $(seq 1 200); do
    check_sum "$1"
    [ "$SNAP" = "$2" ] && { ok "$1: $SNAP"; return 0; }
    sleep 0.05
  done
  fail "$1: counters '$SNAP', want '$2' (submitted completed failed cancelled in_flight)"
}

# leaver N: sends a complete request on a connection of its own, then waits
# for $T/go and resets the connection (SO_LINGER 0: an RST, so the server
# cannot take it for a half-close). perl-base is always installed on Debian.
leaver() {
  perl -MSocket -e '
    my ($port, $go) = @ARGV;
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    connect($s, pack_sockaddr_in($port, inet_aton("127.0.0.1"))) or die "connect: $!";
    my $b = q({"message":"g"});
    syswrite($s, "POST /process HTTP/1.1\r\nHost: t\r\nContent-Length: " . length($b) . "\r\n\r\n$b");
    for (1 .. 400) { last if -e $go; select(undef, undef, undef, 0.05); }
    setsockopt($s, SOL_SOCKET, SO_LINGER, pack("ii", 1, 0));
    close($s);' "$PORT" "$T/go" &
  PIDS+=($!)
}

# No worker: two requests time out (504).
start_server --deadline-ms 1000
expect_snap "fresh server" "0 0 0 0 0"
for i in 1 2; do (post '{"message":"t"}' >"$T/t.$i") & PIDS+=($!); done
for i in 1 2; do
  for _ in $(seq 1 200); do [ -s "$T/t.$i" ] && break; check_sum "waiting for 504s"; sleep 0.05; done
  expect_eq "504 $i" "$(cut -c1-3 "$T/t.$i")" 504
done
expect_snap "after two 504s" "2 0 0 2 0"
[ "$(status_field timeouts_504)" = 2 ] || fail "timeouts_504 != 2"
stop_server

# A server with a long deadline: two clients leave while their requests wait.
start_server --deadline-ms 60000
leaver; leaver
wait_field in_flight 2
check_sum "two waiting"
touch "$T/go"
wait_field client_gone 2
expect_snap "after two clients left" "2 0 0 2 0"
[ "$(status_field timeouts_504)" = 0 ] || fail "timeouts_504 != 0"
ok "client_gone counted apart from timeouts"

# A worker: three results and one rejected input.
start_worker 1
wait_field workers_live 1
for m in a b c; do expect_eq "result $m" "$(post "{\"message\":\"$m\"}" | cut -c1-3)" 200; done
expect_eq "rejected" "$(post '{"nomessage":1}' | cut -c1-3)" 422
expect_snap "after results and a failure" "6 3 1 2 0"

# Under load (80 requests, 8 at a time): every snapshot reconciles while requests are in flight.
seq 1 80 | xargs -P 8 -I{} curl -s --max-time 20 -o /dev/null -d '{"message":"m{}"}' \
  "http://127.0.0.1:$PORT/process" & LOAD=$!; PIDS+=("$LOAD")
n=0
while kill -0 "$LOAD" 2>/dev/null; do check_sum "under load"; n=$((n + 1)); done
wait "$LOAD"
ok "$n snapshots under load reconciled"
expect_snap "after the load" "86 83 1 2 0"
stop_server
