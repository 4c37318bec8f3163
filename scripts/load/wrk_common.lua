-- Shared by the wrk scripts events.lua and webhooks.lua, which load it from their own folder
-- with dofile: the thread numbering of setup() and the JSON line that done() writes.
local M = {}

-- Every thread, in the order setup() saw them (done() reads their globals back).
M.threads = {}
local next_id = 0

-- wrk's setup(thread): thread t (0, 1, …) gets the global tid = t.
function M.setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(M.threads, thread)
end

-- write_summary(summary, latency, fields): one JSON line to $LOAD_SUMMARY: wrk's own figures,
-- then fields, the script's own { name, integer } pairs, in that order.
function M.write_summary(summary, latency, fields)
  local all = {
    { "requests", summary.requests }, { "duration_us", summary.duration },
    { "connect_errors", summary.errors.connect }, { "read_errors", summary.errors.read },
    { "write_errors", summary.errors.write }, { "timeouts", summary.errors.timeout },
    { "non_2xx", summary.errors.status }, { "p50_us", latency:percentile(50) },
    { "p90_us", latency:percentile(90) }, { "p99_us", latency:percentile(99) },
    { "max_us", latency.max },
  }
  for _, field in ipairs(fields) do all[#all + 1] = field end
  local parts = {}
  for i, field in ipairs(all) do parts[i] = string.format('"%s":%d', field[1], field[2]) end
  local out = io.open(os.getenv("LOAD_SUMMARY"), "w")
  out:write("{" .. table.concat(parts, ",") .. "}\n")
  out:close()
end

return M
