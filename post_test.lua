-- wrk script for the Kolosal benchmark: POST /process with a small JSON body.
-- Edit the message below to change what the workers receive.
wrk.method = "POST"
wrk.body = '{"message": "test"}'
wrk.headers["Content-Type"] = "application/json"

-- Count answers by status so errors never pass as throughput.
local statuses = {}
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  codes = {}
end

response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("codes")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, k .. "=" .. v) end
  table.sort(parts)
  io.write(string.format("RESULT requests=%d seconds=%.2f rps=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d statuses=%s\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ",")))
end
