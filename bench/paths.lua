-- paths.lua: wrk script that requests, in turn, every path listed (space-separated) in WRK_PATHS: a mixed load for the RSS check.
local paths = {}
for p in string.gmatch(os.getenv("WRK_PATHS") or "/", "%S+") do
  paths[#paths + 1] = p
end
local i = 0

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
