-- wrk script for bench_api.py --wrk: every request posts a new run (a unique
-- event_id per thread and counter, UUID-shaped and increasing like the SDK's v7
-- ids); at the end it prints how many answers were not 201.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  prefix = string.format("%08x-%04x", math.random(0, 0x7fffffff), tid)
  counter = 0
  not_created = 0
end

function request()
  counter = counter + 1
  local id = string.format("%s-7000-8000-%012x", prefix, counter)
  local body = '{"event_id":"' .. id .. '","run_id":"run-' .. id .. '","agent_name":"agent-'
    .. string.format("%02d", counter % 20) .. '","job_type":"crawl",'
    .. '"start_time":"2026-01-12T10:00:00+00:00","end_time":"2026-01-12T10:00:01.500000+00:00",'
    .. '"status":"success","duration_ms":1500,"items_discovered":10,"items_succeeded":9,'
    .. '"items_failed":1,"host":"bench","metrics_json":{"pages":' .. (counter % 50) .. '}}'
  return wrk.format("POST", "/api/v1/runs", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status ~= 201 then
    not_created = not_created + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("not_created")
  end
  io.write(string.format("not created: %d\n", total))
end
