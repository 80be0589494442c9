-- wrk script for bench/hub: POST an OpenAI-style chat completion.
-- BENCH_API_KEY (environment) is sent as a Bearer token when set.
wrk.method = "POST"
wrk.body = '{"model":"fake","messages":[{"role":"user","content":"test"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end

-- Count answers by status so errors never pass as throughput.
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) codes = {} end
response = function(status, headers, body) codes[status] = (codes[status] or 0) + 1 end

done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("codes")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, k .. "=" .. v) end
  table.sort(parts)
  io.write(string.format("RESULT requests=%d seconds=%.2f rps=%.1f p50_us=%.1f p99_us=%.1f errors=%d statuses=%s\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ",")))
end
