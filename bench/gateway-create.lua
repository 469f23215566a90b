-- wrk script for bench/gateway.sh: sim creates through the gateway.
--
-- Every request is POST /v1/sandboxes with the controller's demo token, on
-- behalf of alice (tenant acme), a Sandbox spec (rootfs host, /bin/true) in
-- the namespace acme-bench-<run>; each sandbox gets its own name
-- (b<thread>-<n>). The `response` hook counts the answers by status; `done`
-- prints one line, "GWBENCH-CREATE {json}", with the counts per status,
-- requests/s and latency percentiles (µs) for bench/gateway.sh to check and
-- report.
--
--   wrk -t2 -c32 -d10s -s bench/gateway-create.lua http://127.0.0.1:PORT/v1/sandboxes
--
-- Environment: GWBENCH_RUN (namespace suffix, default "run"),
-- GWBENCH_TOKEN (default: the controller's demo token).

local run = os.getenv("GWBENCH_RUN") or "run"
local token = os.getenv("GWBENCH_TOKEN") or "demo-controller-token-0000000000"

local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

-- JSON string escaping for the few characters a YAML/JSON spec text holds
local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" else return string.format("\\u%04x", c:byte()) end
  end) .. '"'
end

function init(args)
  n = 0
  statuses = {}
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local name = string.format("b%d-%d", tid, n)
  local spec = '{"apiVersion":"stockade.dev/v1alpha1","kind":"Sandbox",'
    .. '"metadata":{"name":"' .. name .. '","namespace":"acme-bench-' .. run .. '"},'
    .. '"spec":{"rootfs":"host","command":["/bin/true"]}}'
  local body = '{"spec":' .. jstr(spec) .. ',"owner":"alice","tenant":"acme"}'
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s or {}) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'GWBENCH-CREATE {"statuses":{%s},"requests":%d,"duration_us":%d,"rps":%.2f,'
      .. '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    table.concat(parts, ","), summary.requests, summary.duration,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
