-- pgbench script: one single-event append, every client to the same stream ("any").
SELECT append('one', -1, 'bench.appended', '{"n":1,"text":"hello world"}');
