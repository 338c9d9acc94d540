-- wrk script: GET /v1/accounts/{account}/daily-balances?from=&to= for a random seeded account
-- over the whole seeded month (30 days with the running balance), authenticated with the token
-- printed by the api_load server. Same environment variables as wrk_daily_balance.lua.

local token = os.getenv("FLUXO_TOKEN") or error("set FLUXO_TOKEN to the token api_load printed")
local accounts = tonumber(os.getenv("FLUXO_ACCOUNTS") or "100000")
local days = tonumber(os.getenv("FLUXO_DAYS") or "30")
local first = os.getenv("FLUXO_FIRST_DAY") or "2024-01-01"

wrk.headers["Authorization"] = "Bearer " .. token

local y, m, d = first:match("^(%d+)-(%d+)-(%d+)$")
local t0 = os.time({ year = tonumber(y), month = tonumber(m), day = tonumber(d), hour = 12 })
local last = os.date("%Y-%m-%d", t0 + (days - 1) * 86400)

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
  local path = string.format("/v1/accounts/ACC-%06d/daily-balances?from=%s&to=%s",
    math.random(0, accounts - 1), first, last)
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
