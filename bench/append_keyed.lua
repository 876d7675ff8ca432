-- (h) Single-event durable appends, each with its own Idempotency-Key (so every request is
-- new and stores its key and answer in the same batch as its event), each connection to its
-- own streams as in append_distinct.lua. Compare with (a): the cost of a safe retry.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk_common.lua")

function init(args)
  seed_random()
  prefix = unique_prefix("k")
  n = 0
  body = '{"events":[{"type":"bench.appended","data":{"n":1,"text":"hello world"}}]}'
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local path = string.format("/v1/databases/default/streams/%s-%d/events", prefix, n % 10000)
  wrk.headers["Idempotency-Key"] = string.format("%s-%d", prefix, n)
  return wrk.format("POST", path, nil, body)
end
