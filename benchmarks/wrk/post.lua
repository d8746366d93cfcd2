-- POST JSON bodies, one per line of the file given after `--`, round robin from a per-thread start.
-- An API key in $BENCH_API_KEY is sent as a bearer token. done() prints one line "WRK_JSON {...}": requests, errors and latency percentiles in microseconds.
-- Used by benchmarks/run.py: wrk -t2 -cN -dDs --latency -s post.lua URL -- bodies.jsonl

local bodies = {}
local next_body = 0
local n_threads = 0

-- runs in the main Lua state once per thread: give each thread its own starting body
function setup(thread)
  n_threads = n_threads + 1
  thread:set("offset", n_threads * 7919)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      bodies[#bodies + 1] = line
    end
  end
  if #bodies == 0 then
    error("no request bodies in " .. tostring(args[1]))
  end
  next_body = (offset or 0) % #bodies
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local key = os.getenv("BENCH_API_KEY")
  if key and #key > 0 then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.3f,"stdev":%.3f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
