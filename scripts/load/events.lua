-- wrk script for POST /v1/events: every request carries 1..MAX_BATCH events, each a distinct
-- (message, subscription, kind) triple with its own event id, so each accepted event is one
-- stored item. Thread t of T takes the triples k = t, t+T, t+2T… (beyond the last triple they
-- cycle and come back as duplicates, which the responses count).
-- Args (after --): DATA_FILE THREADS API_KEY SUMMARY_FILE
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "wrk_common.lua")
local MAX_BATCH = 10

setup = common.setup

function init(args)
  data = dofile(args[1])
  nthreads = tonumber(args[2])
  headers = {
    ["Authorization"] = "Bearer " .. args[3],
    ["Content-Type"] = "application/json",
  }
  counter = 0
  sent_events, ok_responses, accepted, duplicates, rejected, other_status = 0, 0, 0, 0, 0, 0
  math.randomseed(1000 + tid)
  nsubs, nkinds, nmsgs = #data.subscriptions, #data.kinds, #data.messages
end

function request()
  local n = math.random(1, MAX_BATCH)
  local parts = {}
  for i = 1, n do
    local k = counter * nthreads + tid
    counter = counter + 1
    local kind = data.kinds[(k % nkinds) + 1]
    local sub = data.subscriptions[(math.floor(k / nkinds) % nsubs) + 1]
    local msg = data.messages[(math.floor(k / (nkinds * nsubs)) % nmsgs) + 1]
    parts[i] = string.format(
      '{"event_id":"load-%d","message_id":"%s","subscription_id":"%s","kind":"%s"}', k, msg, sub, kind)
  end
  sent_events = sent_events + n
  return wrk.format("POST", "/v1/events", headers, '{"events":[' .. table.concat(parts, ",") .. "]}")
end

function response(status, headers, body)
  if status == 200 then
    ok_responses = ok_responses + 1
    accepted = accepted + tonumber(string.match(body, '"accepted":(%d+)') or 0)
    duplicates = duplicates + tonumber(string.match(body, '"duplicates":(%d+)') or 0)
    local _, r = string.gsub(body, '"index":', "")
    rejected = rejected + r
  else
    other_status = other_status + 1
  end
end

function done(summary, latency, requests)
  local threads = common.threads
  local totals = { sent_events = 0, ok_responses = 0, accepted = 0, duplicates = 0, rejected = 0,
                   other_status = 0, max_triple = 0 }
  for _, t in ipairs(threads) do
    for name, _ in pairs(totals) do
      if name ~= "max_triple" then totals[name] = totals[name] + (t:get(name) or 0) end
    end
    local issued = (t:get("counter") or 0) * #threads
    if issued > totals.max_triple then totals.max_triple = issued end
  end
  common.write_summary(summary, latency, {
    { "sent_events", totals.sent_events }, { "ok_responses", totals.ok_responses },
    { "accepted", totals.accepted }, { "duplicates", totals.duplicates },
    { "rejected", totals.rejected }, { "other_status", totals.other_status },
    { "max_triple", totals.max_triple },
  })
end
