-- (f) Conditional single-event appends (DCB): each request appends one stream-less event
-- tagged with a key no other request uses, on condition that no event with that tag exists
-- yet (failIfEventsMatch without `after`). Every condition holds, so every request should be
-- 201; the figure is the cost of evaluating the condition in the writer (a tag-index lookup
-- plus the check of the batch's own events).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk_common.lua")

function init(args)
  seed_random()
  prefix = unique_prefix("c")
  n = 0
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local tag = string.format("key:%s-%d", prefix, n)
  local body = string.format('{"events":[{"type":"bench.reserved","data":{"n":%d},"tags":["%s"]}],' ..
    '"condition":{"failIfEventsMatch":{"items":[{"types":["bench.reserved"],"tags":["%s"]}]}}}',
    n, tag, tag)
  return wrk.format("POST", "/v1/databases/default/events", nil, body)
end
