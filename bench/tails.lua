-- Appended to every wrk run of the benches: the latency percentiles wrk's own report leaves
-- out (p99.9), on one line the bench scripts parse. Microseconds.
done = function(summary, latency, requests)
  io.write(string.format("TAILS %d %d %d %d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
