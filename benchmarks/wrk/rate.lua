-- Like post.lua, but at a fixed rate: each wrk thread sends RATE requests a second (the second argument after
-- `--`) on a schedule of its own, whatever the latency (wrk has no rate control; wrk2 is not packaged).
-- After a response a connection waits for the thread's next free slot; a thread that falls behind (slow
-- answers) sends at once until it has caught up, by at most one second's worth of requests.
-- Latency is measured by wrk from the moment a request is sent, so a stall that holds back every connection
-- is seen in the rate (requests) more than in the percentiles. Used by benchmarks/soak.py:
-- wrk -t2 -cN -dDs --latency -s rate.lua URL -- bodies.jsonl RATE_PER_THREAD

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } credit_decision_timespec;
int clock_gettime(int clock_id, credit_decision_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local now_buffer = ffi.new("credit_decision_timespec[1]")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_buffer)
  return tonumber(now_buffer[0].tv_sec) * 1000.0 + tonumber(now_buffer[0].tv_nsec) / 1e6
end

local bodies = {}
local next_body = 0
local n_threads = 0
local interval_ms = 1.0
local next_slot = nil

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
  local rate = tonumber(args[2] or "")
  if rate == nil or rate <= 0 then
    error("the second argument must be the requests per second of each thread")
  end
  interval_ms = 1000.0 / rate
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

-- milliseconds until this thread's next slot (0: due or overdue)
function delay()
  local now = now_ms()
  if next_slot == nil or next_slot < now - 1000.0 then
    next_slot = math.max(next_slot or now, now - 1000.0)
  end
  next_slot = next_slot + interval_ms
  local wait = next_slot - now
  if wait <= 0 then
    return 0
  end
  return math.floor(wait + 0.5)
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
