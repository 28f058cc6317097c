-- progress.lua: wrk script for POST /api/v1/recordings/{id}/progress: a new session per request (the API allows one event per session per second).
-- The URL given to wrk is the progress path; the Authorization header comes with -H.
local counter = 0
math.randomseed(os.time())
prefix = "wrk0x000000" -- a global: setup() gives each thread its own (thread:set)

function setup(thread)
  counter = counter + 1
  thread:set("prefix", "wrk" .. counter .. "x" .. math.random(100000, 999999))
end

function request()
  counter = counter + 1
  local body = '{"session_id":"' .. prefix .. "-" .. counter ..
    '","event":"heartbeat","position_s":5,"from_s":0,"to_s":5}'
  wrk.headers["Content-Type"] = "application/json"
  return wrk.format("POST", nil, nil, body)
end
