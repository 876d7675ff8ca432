-- (b) Single-event durable appends, every connection to one stream, expectedVersion "any".
-- The stream name is the first script argument (wrk ... -- NAME), default "bench-one".
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk_common.lua")

function init(args)
  local stream = args[1] or "bench-one"
  path = "/v1/databases/default/streams/" .. stream .. "/events"
  body = '{"events":[{"type":"bench.appended","data":{"n":1,"text":"hello world"}}],' ..
         '"expectedVersion":"any"}'
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  return wrk.format("POST", path, nil, body)
end
