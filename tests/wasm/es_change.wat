;; An EvidentSource state change over the JSON-in/JSON-out ABI of docs/design/jsworker.md
;; ("WebAssembly"): decide([command]) answers one CloudEvent without id or source (the server
;; fills them in). Used by tests/integration/evidentsource/test_views.py.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"events\":[{\"type\":\"WasmDecided\",\"subject\":\"wasm\",\"data\":{\"by\":\"wasm\"}}]}")
  (func (export "alloc") (param $len i32) (result i32)
    (if (i32.gt_u (i32.add (i32.const 1024) (local.get $len)) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq (memory.grow (i32.shr_u (i32.add (local.get $len) (i32.const 66559))
                                            (i32.const 16)))
                    (i32.const -1))
          (then unreachable))))
    (i32.const 1024))
  (func (export "decide") (param i32 i32) (result i64)
    (i64.const 73)))
