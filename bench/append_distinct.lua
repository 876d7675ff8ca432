-- Single-event durable appends, each connection to its own streams (wrk -s).
local counter = 0
local threads = {}
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  n = 0
  body = '{"events":[{"type":"bench.appended","data":{"n":1,"text":"hello world"}}]}'
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  n = n + 1
  local path = string.format("/v1/databases/default/streams/bench-%d-%d/events", tid, n % 1000)
  return wrk.format("POST", path, nil, body)
end
