-- Shared by the Annals wrk scripts (loaded with dofile from each of them).
-- setup() runs once per wrk thread in the main Lua state: it numbers the threads and keeps
-- them so done() can add up what each thread's response() counted. Every response that is not
-- 2xx is counted; done() prints one machine-readable line that bench/run.sh parses:
--   annals-bench: responses=N 2xx=N non2xx=N statuses=201:N,409:N
-- and, if there were failures, the first failing status and body.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

ok2xx = 0
non2xx = 0
statuses = {}
first_error = nil

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 200 and status < 300 then
    ok2xx = ok2xx + 1
  else
    non2xx = non2xx + 1
    if first_error == nil then
      first_error = tostring(status) .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

-- A per-thread random generator seeded from the time and the thread number, so threads
-- (separate Lua states with the same default seed) do not draw the same names.
function seed_random()
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919 + math.floor((os.clock() * 1e6) % 1e6))
  for _ = 1, 10 do math.random() end
end

-- A name no other thread (or earlier run) uses: thread number plus a random suffix.
function unique_prefix(kind)
  return string.format("%s-%d-%06x", kind, tid or 0, math.random(0, 0xffffff))
end

function done(summary, latency, requests)
  local ok, bad, all = 0, 0, {}
  local first = nil
  for _, t in ipairs(threads) do
    ok = ok + (t:get("ok2xx") or 0)
    bad = bad + (t:get("non2xx") or 0)
    local st = t:get("statuses") or {}
    for code, n in pairs(st) do
      all[code] = (all[code] or 0) + n
    end
    if first == nil then first = t:get("first_error") end
  end
  local codes = {}
  for code in pairs(all) do table.insert(codes, code) end
  table.sort(codes)
  local parts = {}
  for _, code in ipairs(codes) do table.insert(parts, code .. ":" .. all[code]) end
  io.write(string.format("annals-bench: responses=%d 2xx=%d non2xx=%d statuses=%s\n",
                         ok + bad, ok, bad, table.concat(parts, ",")))
  if first ~= nil then
    io.write("annals-bench: first non-2xx: " .. string.gsub(first, "\n", " ") .. "\n")
  end
end
