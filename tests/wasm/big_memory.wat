;; A module whose memory starts at 2000 pages (125 MiB): over a 64 MiB budget, refused at load.
(module
  (memory (export "memory") 2000)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "reduce") (param i32 i32) (result i64) (i64.const 0)))
