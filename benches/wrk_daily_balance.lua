-- wrk script: GET /v1/accounts/{account}/daily-balances/{date} with a random seeded account and
-- day per request, authenticated with the token printed by the api_load server.
--
--   FLUXO_TOKEN=... [FLUXO_ACCOUNTS=100000] [FLUXO_DAYS=30] [FLUXO_FIRST_DAY=2024-01-01] \
--     wrk -t2 -c64 -d20s --latency -s benches/wrk_daily_balance.lua http://127.0.0.1:8080
--
-- Any answer other than 200 counts as an error in wrk's "Non-2xx or 3xx responses" line.

local token = os.getenv("FLUXO_TOKEN") or error("set FLUXO_TOKEN to the token api_load printed")
local accounts = tonumber(os.getenv("FLUXO_ACCOUNTS") or "100000")
local days = tonumber(os.getenv("FLUXO_DAYS") or "30")
local first = os.getenv("FLUXO_FIRST_DAY") or "2024-01-01"

wrk.headers["Authorization"] = "Bearer " .. token

-- The business dates as text; noon avoids any DST edge of the local time zone.
local dates = {}
local y, m, d = first:match("^(%d+)-(%d+)-(%d+)$")
local t0 = os.time({ year = tonumber(y), month = tonumber(m), day = tonumber(d), hour = 12 })
for i = 1, days do
  dates[i] = os.date("%Y-%m-%d", t0 + (i - 1) * 86400)
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
  local path = string.format("/v1/accounts/ACC-%06d/daily-balances/%s",
    math.random(0, accounts - 1), dates[math.random(1, days)])
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  io.write(string.format("p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
  local e = summary.errors
  io.write(string.format("requests %d, errors: connect %d read %d write %d status %d timeout %d\n",
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
end
