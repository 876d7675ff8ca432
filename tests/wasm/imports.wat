;; A module that imports a function: refused at load (a component has no host access).
(module
  (import "env" "log" (func $log (param i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "reduce") (param i32 i32) (result i64) (call $log (i32.const 1)) (i64.const 0)))
