;; Exports that do not match the ABI: reduce takes one i32.
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "reduce") (param i32) (result i64) (i64.const 0)))
