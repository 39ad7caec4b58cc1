-- bench/api.lua: the requests wrk sends for bench/api (see bench/README.md).
--
-- Each connection cycles through three reads, with the bench's token:
--   GET /api/v1/datasets/NAME/versions
--   GET /api/v1/audit?limit=100                  (the ledger's first page)
--   GET /api/v1/audit?limit=100&after=N          (N drawn from the ledger as it
--                                                 was before the run)
-- Environment: BENCH_TOKEN, BENCH_DATASET, BENCH_LEDGER (entries before the
-- run), BENCH_THINK_MS (each connection's pause between requests, default 0). done() prints one "wrk-result" line of key=value pairs for the script.

local token = os.getenv("BENCH_TOKEN") or error("BENCH_TOKEN is not set")
local dataset = os.getenv("BENCH_DATASET") or error("BENCH_DATASET is not set")
local entries = tonumber(os.getenv("BENCH_LEDGER") or "1")
local headers = { ["Authorization"] = "Bearer " .. token }
local think = tonumber(os.getenv("BENCH_THINK_MS") or "0")

if think > 0 then
	function delay()
		return think
	end
end

local threads = 0
function setup(thread)
	thread:set("id", threads)
	threads = threads + 1
end

local fixed = {}
local n = 0

function init(args)
	-- Threads start at different points of the cycle, and draw different pages.
	math.randomseed(1000 + (id or 0))
	n = id or 0
	fixed[0] = wrk.format("GET", "/api/v1/datasets/" .. dataset .. "/versions", headers)
	fixed[1] = wrk.format("GET", "/api/v1/audit?limit=100", headers)
end

function request()
	local k = n % 3
	n = n + 1
	if k < 2 then
		return fixed[k]
	end
	return wrk.format("GET", "/api/v1/audit?limit=100&after=" .. math.random(0, entries - 1), headers)
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"wrk-result requests=%d duration_us=%d bytes=%d mean_us=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
		"connect=%d read=%d write=%d status=%d timeout=%d\n",
		summary.requests, summary.duration, summary.bytes, latency.mean,
		latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
		e.connect, e.read, e.write, e.status, e.timeout))
end
