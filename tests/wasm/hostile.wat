;; Entry points that break the rules of the ABI or the module's budgets, for
;; tests/unit/logic_js_test.c: each must fail its call cleanly, with the module usable after.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{nope")
  (data (i32.const 8) "1")
  (data (i32.const 16) "[1,\"a\",{\"b\":null}]  ")

  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "dealloc") (param i32 i32))

  ;; an infinite loop
  (func (export "spin") (param i32 i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0))

  ;; grows the memory a MiB at a time until refused, then traps (as an allocator would)
  (func (export "grow") (param i32 i32) (result i64)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable)

  ;; asks for 1 GiB at once
  (func (export "grow_at_once") (param i32 i32) (result i64)
    (if (i32.eq (memory.grow (i32.const 16384)) (i32.const -1)) (then unreachable))
    (i64.const 0x800000001))

  ;; "{nope": not JSON
  (func (export "bad_json") (param i32 i32) (result i64) (i64.const 5))

  ;; a result that ends past the memory
  (func (export "out_of_bounds") (param i32 i32) (result i64) (i64.const 0xfff000000100))

  ;; a trap
  (func (export "trap") (param i32 i32) (result i64) unreachable)

  ;; JSON with spaces after it: kept as it is, less the spaces
  (func (export "spaces") (param i32 i32) (result i64) (i64.const 0x1000000014))

  (func (export "ok") (param i32 i32) (result i64) (i64.const 0x800000001)))
