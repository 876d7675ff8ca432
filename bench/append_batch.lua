-- (c) 100-event batches (one request = 100 events committed atomically), each connection to
-- its own streams (named as in append_distinct.lua). Batch size: first script argument.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk_common.lua")

function init(args)
  seed_random()
  prefix = unique_prefix("b")
  n = 0
  local count = tonumber(args[1] or "100")
  local events = {}
  for i = 1, count do
    events[i] = string.format('{"type":"bench.appended","data":{"n":%d,"text":"hello world"}}', i)
  end
  body = '{"events":[' .. table.concat(events, ",") .. ']}'
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local path = string.format("/v1/databases/default/streams/%s-%d/events", prefix, n % 10000)
  return wrk.format("POST", path, nil, body)
end
