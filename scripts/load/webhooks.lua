-- wrk script for the webhooks and /v1/track: cycles through prepared requests (scripts/load/
-- prepare.py writes them: path TAB signature header TAB body, one distinct event each; the
-- track lines have an empty signature, the token is in the body). Thread t of T sends lines
-- t, t+T, t+2T… in order, so the distinct events a thread got answered are min(answered, its
-- lines) and at most min(sent, its lines) reached the server; beyond its lines a thread sends
-- replays, which must be answered the same and stored nothing more.
-- Args (after --): REQUESTS_FILE THREADS KIND (twilio|push|track) [EXPECTED_STATUS]
-- EXPECTED_STATUS (e.g. 401 for forged tokens) is the only answer counted as expected; without
-- it, any 2xx.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "wrk_common.lua")

setup = common.setup

function init(args)
  local nthreads = tonumber(args[2])
  local kind = args[3]
  expected = tonumber(args[4])
  reqs = {}
  local line_no = 0
  for line in io.lines(args[1]) do
    if line_no % nthreads == tid then
      local path, signature, body = string.match(line, "^([^\t]*)\t([^\t]*)\t(.*)$")
      local headers
      if kind == "twilio" then
        headers = { ["X-Twilio-Signature"] = signature,
                    ["Content-Type"] = "application/x-www-form-urlencoded" }
      elseif kind == "track" then
        headers = { ["Content-Type"] = "application/json" }
      else
        headers = { ["Retarget-Signature"] = signature, ["Content-Type"] = "application/json" }
      end
      reqs[#reqs + 1] = wrk.format("POST", path, headers, body)
    end
    line_no = line_no + 1
  end
  lines = #reqs
  sent, ok_responses, other_status = 0, 0, 0
end

function request()
  local r = reqs[(sent % lines) + 1]
  sent = sent + 1
  return r
end

function response(status, headers, body)
  local ok
  if expected then ok = status == expected else ok = status >= 200 and status < 300 end
  if ok then
    ok_responses = ok_responses + 1
  else
    other_status = other_status + 1
  end
end

function done(summary, latency, requests)
  local sent_total, ok_total, other, acked_distinct, sent_distinct, lines_total = 0, 0, 0, 0, 0, 0
  for _, t in ipairs(common.threads) do
    local s, o, n = t:get("sent"), t:get("ok_responses"), t:get("lines")
    sent_total = sent_total + s
    ok_total = ok_total + o
    other = other + t:get("other_status")
    acked_distinct = acked_distinct + math.min(o, n)
    sent_distinct = sent_distinct + math.min(s, n)
    lines_total = lines_total + n
  end
  common.write_summary(summary, latency, {
    { "sent", sent_total }, { "ok_responses", ok_total }, { "other_status", other },
    { "acked_distinct", acked_distinct }, { "sent_distinct", sent_distinct },
    { "lines", lines_total },
  })
end
