-- pgbench script: one single-event append to a random one of 100,000 streams ("any").
\set s random(1, 100000)
SELECT append('s-' || :s, -1, 'bench.appended', '{"n":1,"text":"hello world"}');
